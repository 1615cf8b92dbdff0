import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRendererUrl, TrustedWindows } from '../../electron/app/sender.js';
import { eventFrom, FakeContents, frame, RENDERER_INDEX, RENDERER_URL } from './electron-fakes.js';

test('our renderer URL matches, with or without a #fragment; nothing else does', () => {
  assert.equal(isRendererUrl(RENDERER_URL, RENDERER_INDEX), true);
  assert.equal(isRendererUrl(`${RENDERER_URL}#/sandbox/sb-1`, RENDERER_INDEX), true);
  for (const url of [
    `${RENDERER_URL}?x=1`,
    'file:///opt/belljar/dist/renderer/other.html',
    'file:///opt/belljar/dist/renderer/index.html/../../../etc/passwd',
    'file://host/opt/belljar/dist/renderer/index.html',
    'https://opt/belljar/dist/renderer/index.html',
    'http://localhost:5173/',
    'about:blank',
    'data:text/html,hi',
    '',
    'not a url',
  ]) {
    assert.equal(isRendererUrl(url, RENDERER_INDEX), false, url);
  }
});

test('a path with characters that need escaping still matches its own file URL', () => {
  const index = '/home/ann/Belljar App/dist/renderer/index.html';
  assert.equal(isRendererUrl('file:///home/ann/Belljar%20App/dist/renderer/index.html', index), true);
});

test('the main frame of our window on our page is trusted', () => {
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const window = new FakeContents(1);
  trusted.add(window);
  assert.equal(trusted.isTrustedSender(eventFrom(window)), true);
});

test('unknown WebContents, subframes, missing frames and foreign URLs are refused', () => {
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const window = new FakeContents(1);
  trusted.add(window);
  const stranger = new FakeContents(2);
  assert.equal(trusted.isTrustedSender(eventFrom(stranger)), false, 'a WebContents that is not our window');
  const child = frame(RENDERER_URL, window.mainFrame, 2);
  assert.equal(trusted.isTrustedSender(eventFrom(window, child)), false, 'a subframe, even on our URL');
  assert.equal(trusted.isTrustedSender(eventFrom(window, null)), false, 'a frame that navigated or is gone');
  const otherTop = frame(RENDERER_URL, null, 99);
  assert.equal(trusted.isTrustedSender(eventFrom(window, otherTop)), false, 'a top frame that is not the main frame');
  const navigated = new FakeContents(3, frame('https://evil.example/'));
  trusted.add(navigated);
  assert.equal(trusted.isTrustedSender(eventFrom(navigated)), false, 'our window showing a foreign page');
});

test('a destroyed window is no longer trusted or pushed to', () => {
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const window = new FakeContents(1);
  trusted.add(window);
  assert.deepEqual(trusted.list(), [window]);
  window.destroy();
  assert.equal(trusted.isTrustedSender(eventFrom(window)), false);
  assert.deepEqual(trusted.list(), []);
});
