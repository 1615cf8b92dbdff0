/**
 * The home tab: opening files and web addresses, the list of running
 * sandboxes, recent errors, keyboard shortcuts and accessibility basics.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FakeGlobals } from './fake-api.js';
import { fakeCalls, openApp, sandbox, startHarness, TEST_TIMEOUT_MS, waitFor, type Harness } from './harness.js';

const options = { timeout: TEST_TIMEOUT_MS };
let h: Harness;

before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

/** The page's globals these tests touch (the root tsconfig has no DOM library). */
interface PageGlobals {
  document: { activeElement: { id: string; textContent: string | null } | null; title: string };
}

async function focusedElement(page: import('playwright-core').Page): Promise<{ id: string; text: string }> {
  return page.evaluate(() => {
    const active = (globalThis as unknown as PageGlobals).document.activeElement;
    return { id: active?.id ?? '', text: active?.textContent ?? '' };
  });
}

describe('home view', () => {
  test('lists running sandboxes with memory and uptime', options, async () => {
    const { page, context, problems } = await openApp(h, {
      sandboxes: [
        sandbox({ id: 'sb-1', memoryMiB: 256, rssMiB: 41, openedAt: Date.now() - 65_000 }),
        sandbox({
          id: 'sb-2',
          title: 'example.com',
          item: { kind: 'url', url: 'https://example.com/' },
          state: 'starting',
          stage: 'booting',
          memoryMiB: 512,
          openedAt: Date.now() - 3_000,
        }),
      ],
    });
    try {
      const table = page.getByRole('table', { name: 'Running sandboxes' });
      const first = table.getByRole('row', { name: /invoice\.pdf/ });
      assert.match(await first.innerText(), /Running/);
      assert.match(await first.innerText(), /256 MiB \(41 MiB in use\)/);
      assert.match(await first.innerText(), /1 min [5-9] s/);
      const second = table.getByRole('row', { name: /example\.com/ });
      assert.match(await second.innerText(), /Starting\s+512 MiB\s+[3-6] s/);
      // The uptime ticks.
      await waitFor('the uptime to advance', async () => /1 min ([6-9]|1\d) s/.test(await first.innerText()), 3_000);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test('the URL field refuses non-web addresses before calling open', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [] });
    try {
      const field = page.getByLabel('Web address', { exact: true });
      for (const [input, message] of [
        ['javascript:alert(1)', /Only web addresses \(http:\/\/ or https:\/\/\) can be opened here, not "javascript:"/],
        ['file:///etc/passwd', /not "file:"/],
        ['ftp://example.com/x', /not "ftp:"/],
        ['   ', /Type or paste a web address first/],
        ['https://user:secret@example.com/', /user name or password/],
      ] as const) {
        await field.fill(input);
        await page.getByRole('button', { name: 'Open in sandbox' }).click();
        assert.match(await page.getByRole('alert').innerText(), message, input);
        assert.equal(await field.getAttribute('aria-invalid'), 'true');
      }
      assert.equal((await fakeCalls(page, 'open')).length, 0);
    } finally {
      await context.close();
    }
  });

  test('open rejections show as plain errors; a good address opens a tab', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [] });
    try {
      await page.evaluate(() =>
        (globalThis as unknown as FakeGlobals).__belljarFake.setOpenError(
          "Error invoking remote method 'belljar:open': Error: That address is on the blocked list.",
        ),
      );
      const field = page.getByLabel('Web address', { exact: true });
      await field.fill('https://bad.example/');
      await field.press('Enter');
      const alert = page.getByRole('alert');
      await alert.getByText('Could not open https://bad.example/: That address is on the blocked list.').waitFor();
      const problems = page.getByRole('region', { name: 'Recent problems' });
      await problems
        .getByText(/Could not open https:\/\/bad\.example\/: That address is on the blocked list\./)
        .waitFor();

      await page.evaluate(() => (globalThis as unknown as FakeGlobals).__belljarFake.setOpenError(null));
      await field.fill('example.com/docs');
      await field.press('Enter');
      await page.getByRole('tab', { name: /example\.com/, selected: true }).waitFor();
      const opens = await fakeCalls(page, 'open');
      assert.deepEqual(opens.at(-1)?.args, [{ kind: 'url', url: 'https://example.com/docs' }]);
    } finally {
      await context.close();
    }
  });

  test('open a file: the dialog button, and Ctrl+O', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [] });
    try {
      await page.getByRole('button', { name: 'Open a file…' }).click();
      await page.getByRole('tab', { name: /invoice\.pdf/, selected: true }).waitFor();
      await page.getByRole('tab', { name: 'Home' }).click();
      await page.keyboard.press('Control+O');
      await waitFor('a second pickAndOpenFile', async () => (await fakeCalls(page, 'pickAndOpenFile')).length === 2);
      await page.keyboard.press('Control+Shift+O');
      await waitFor('a third pickAndOpenFile', async () => (await fakeCalls(page, 'pickAndOpenFile')).length === 3);
    } finally {
      await context.close();
    }
  });

  test('a cancelled file dialog changes nothing', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [], pickCancels: true });
    try {
      await page.getByRole('button', { name: 'Open a file…' }).click();
      await waitFor('pickAndOpenFile', async () => (await fakeCalls(page, 'pickAndOpenFile')).length === 1);
      assert.equal(await page.getByRole('tab').count(), 1);
      assert.equal(await page.getByRole('region', { name: 'Recent problems' }).count(), 0);
    } finally {
      await context.close();
    }
  });

  test('shortcuts: URL field, tab cycling, close', options, async () => {
    const { page, context } = await openApp(h, {
      sandboxes: [
        sandbox({ id: 'sb-1' }),
        sandbox({ id: 'sb-2', title: 'report.docx', item: { kind: 'file', name: 'report.docx' } }),
      ],
    });
    try {
      await page.keyboard.press('Control+Shift+PageDown');
      await page.getByRole('tab', { name: /invoice\.pdf/, selected: true }).waitFor();
      assert.match((await focusedElement(page)).text, /invoice\.pdf/, 'the tab takes the focus');
      await page.keyboard.press('Control+Shift+PageDown');
      await page.getByRole('tab', { name: /report\.docx/, selected: true }).waitFor();
      assert.match(await page.title(), /report\.docx — sandboxed — Belljar/);
      await page.keyboard.press('Control+Shift+PageUp');
      await page.getByRole('tab', { name: /invoice\.pdf/, selected: true }).waitFor();

      await page.keyboard.press('Control+Shift+W');
      await waitFor('close', async () => (await fakeCalls(page, 'close')).length === 1);
      assert.deepEqual((await fakeCalls(page, 'close'))[0]?.args, ['sb-1']);
      await page.getByRole('tab', { name: 'Home', selected: true }).waitFor();
      await waitFor('the tab to go', async () => (await page.getByRole('tab', { name: /invoice\.pdf/ }).count()) === 0);

      await page.getByRole('tab', { name: /report\.docx/ }).click();
      await page.keyboard.press('Control+Shift+L');
      await waitFor('the URL field to have focus', async () => (await focusedElement(page)).id === 'url-input');
    } finally {
      await context.close();
    }
  });

  test('accessibility: names, tab order, arrow keys in the tab strip', options, async () => {
    const { page, context } = await openApp(h, { sandboxes: [sandbox({ id: 'sb-1' })] });
    try {
      await page.getByRole('tablist', { name: 'Belljar tabs' }).waitFor();
      await page.getByRole('tab', { name: 'invoice.pdf, sandboxed, running' }).waitFor();
      await page.getByRole('heading', { name: 'Belljar', level: 1 }).waitFor();
      await page.getByRole('form', { name: 'Open a web address' }).waitFor();
      await page.getByRole('button', { name: 'Close invoice.pdf' }).waitFor();
      await page.getByRole('region', { name: 'Keyboard shortcuts' }).waitFor();

      // Focus order from the top: the tab strip (one stop), open file, URL field, its button.
      const order: string[] = [];
      for (let i = 0; i < 4; i++) {
        await page.keyboard.press('Tab');
        const f = await focusedElement(page);
        order.push(f.id || f.text);
      }
      assert.deepEqual(order, ['tab-home', 'Open a file…', 'url-input', 'Open in sandbox']);

      await page.getByRole('tab', { name: 'Home' }).focus();
      await page.keyboard.press('ArrowRight');
      await page.getByRole('tab', { name: /invoice\.pdf/, selected: true }).waitFor();
      await page.getByRole('tabpanel', { name: /invoice\.pdf/ }).waitFor();
      await page.getByRole('button', { name: 'Close sandbox' }).waitFor();
      await page.keyboard.press('Home');
      await page.getByRole('tab', { name: 'Home', selected: true }).waitFor();
    } finally {
      await context.close();
    }
  });
});
