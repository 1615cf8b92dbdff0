/** A sandbox's tab: the sandboxed frame, boot progress, state, failures, closing. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  fakeCalls,
  openApp,
  sandbox,
  setSandboxes,
  startHarness,
  TEST_TIMEOUT_MS,
  waitFor,
  type Harness,
} from './harness.js';

const options = { timeout: TEST_TIMEOUT_MS };
let h: Harness;

before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

describe('sandbox view', () => {
  test('boot progress follows the stages, then the state shows running', options, async () => {
    const starting = sandbox({ id: 'sb-1', state: 'starting', stage: 'preparing' });
    const { page, context } = await openApp(h, { sandboxes: [starting] });
    try {
      await page.getByRole('tab', { name: /invoice\.pdf/ }).click();
      const state = page.getByTestId('sandbox-state');
      assert.equal(await state.innerText(), 'Starting');
      const progress = page.getByRole('progressbar', { name: /Preparing the sandbox/ });
      assert.equal(await progress.getAttribute('value'), '0');
      assert.equal(await progress.getAttribute('max'), '4');

      await setSandboxes(page, [{ ...starting, stage: 'opening' }]);
      const opening = page.getByRole('progressbar', { name: /Opening the item/ });
      await opening.waitFor();
      assert.equal(await opening.getAttribute('value'), '3');
      assert.equal(await opening.getAttribute('aria-valuetext'), 'Opening the item (step 4 of 5)');

      await setSandboxes(page, [{ ...starting, state: 'running', stage: 'shown' }]);
      await waitFor('running', async () => (await state.innerText()) === 'Running');
      assert.equal(await page.getByRole('progressbar').count(), 0);
      // The sandboxed frame is there: the band and the amber border.
      await page.getByText('SANDBOXED — nothing in here can touch your computer').waitFor();
      const border = await page
        .locator('section.sandbox')
        .evaluate(
          (e) =>
            (globalThis as unknown as { getComputedStyle(e: unknown): { borderTopColor: string } }).getComputedStyle(e)
              .borderTopColor,
        );
      assert.equal(border, 'rgb(245, 158, 11)');
    } finally {
      await context.close();
    }
  });

  test('a failed sandbox says why, on its tab and in recent problems', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [sandbox({ id: 'sb-1', state: 'starting' })] });
    try {
      await page.getByRole('tab', { name: /invoice\.pdf/ }).click();
      await setSandboxes(page, [
        sandbox({ id: 'sb-1', state: 'failed', stage: 'booting', error: 'The microVM did not start within 30 s.' }),
      ]);
      const alert = page.getByRole('alert');
      await alert.getByText(/This sandbox failed\..*The microVM did not start within 30 s\./).waitFor();
      assert.equal(await page.getByRole('application').count(), 0, 'no display for a failed sandbox');
      await page.getByRole('tab', { name: 'Home' }).click();
      await page
        .getByRole('region', { name: 'Recent problems' })
        .getByText('invoice.pdf: The microVM did not start within 30 s.')
        .waitFor();
    } finally {
      await context.close();
    }
  });

  test('the close button closes the sandbox and detaches its display', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [sandbox({ id: 'sb-1' })] });
    try {
      await page.getByRole('tab', { name: /invoice\.pdf/ }).click();
      await waitFor('attach', async () => (await fakeCalls(page, 'attachDisplay')).length === 1);
      await page.getByRole('button', { name: 'Close sandbox' }).click();
      await waitFor('close', async () => (await fakeCalls(page, 'close')).length === 1);
      assert.deepEqual((await fakeCalls(page, 'close'))[0]?.args, ['sb-1']);
      await page.getByRole('tab', { name: 'Home', selected: true }).waitFor();
      await waitFor('detach', async () => (await fakeCalls(page, 'detachDisplay')).length === 1);
      await waitFor('the tab to go', async () => (await page.getByRole('tab').count()) === 1);
    } finally {
      await context.close();
    }
  });

  test('untrusted page titles are shown as data', options, async () => {
    const { page, context } = await openApp(h, {
      sandboxes: [sandbox({ id: 'sb-1', page: { title: '<b>Your bank</b> — log in', state: 'loaded' } })],
    });
    try {
      await page.getByRole('tab', { name: /invoice\.pdf/ }).click();
      assert.equal(await page.locator('.untrusted').innerText(), '<b>Your bank</b> — log in');
      assert.equal(await page.locator('.untrusted b').count(), 0);
    } finally {
      await context.close();
    }
  });
});
