/**
 * `npm run bench:canvas [-- --width W --height H]`: how fast the renderer can
 * draw the guest display's dirty rectangles in Chromium, 2D `putImageData`
 * against WebGL `texSubImage2D` + a full-screen quad. Runs Debian's Chromium
 * headless through playwright-core; headless Chromium without a GPU gives
 * WebGL through SwiftShader (software), which the output names.
 *
 * For each rectangle size, two numbers (ms per rectangle, mean and p95; the
 * page's timer is coarsened to 0.1 ms, so means, not medians, for small ops):
 *   - synced: one rectangle, then a 1-pixel readback, which waits until the
 *     pixels are really in the canvas (the latency of one small update);
 *   - batched: 16 rectangles, then one readback, divided by 16 (throughput,
 *     as when a frame carries several rectangles).
 * Each op builds the rectangle's view the way the renderer does (no copy).
 * A table goes to stdout and, as the last line, one JSON object.
 */
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { round } from './stats.js';

const CHROMIUM = '/usr/bin/chromium';
const BATCH = 16;

const { values } = parseArgs({
  options: {
    width: { type: 'string', default: '1280' },
    height: { type: 'string', default: '800' },
    scale: { type: 'string', default: '1' },
  },
});
const screen = { width: Number(values.width), height: Number(values.height) };
/** Multiplies the iteration counts (0.2 for a quick look). */
const scale = Number(values.scale);
if (!(screen.width >= 256 && screen.height >= 256 && scale > 0)) {
  console.error('bench:canvas: --width and --height must be ≥ 256, --scale > 0');
  process.exit(2);
}

interface Case {
  readonly name: string;
  readonly width: number;
  readonly height: number;
  readonly iterations: number;
}

const cases: Case[] = [
  { name: '64×64', width: 64, height: 64, iterations: Math.ceil(600 * scale) },
  { name: '256×256', width: 256, height: 256, iterations: Math.ceil(300 * scale) },
  { name: `full ${screen.width}×${screen.height}`, ...screen, iterations: Math.ceil(60 * scale) },
];

interface PageArgs {
  readonly screen: { readonly width: number; readonly height: number };
  readonly cases: readonly Case[];
  readonly batch: number;
}

interface Timing {
  readonly mean: number;
  readonly median: number;
  readonly p95: number;
}

interface CaseResult {
  readonly name: string;
  readonly canvas2d: { readonly synced: Timing; readonly batched: Timing };
  readonly webgl: { readonly synced: Timing; readonly batched: Timing } | null;
}

interface PageResult {
  readonly webglRenderer: string | null;
  readonly cases: readonly CaseResult[];
}

/**
 * Runs inside the page. The root tsconfig has no DOM library (it checks Node
 * code), so the few browser APIs used here are typed structurally.
 */
function runInPage(args: PageArgs): PageResult {
  interface ImageDataLike {
    readonly width: number;
  }
  interface Ctx2d {
    putImageData(image: ImageDataLike, x: number, y: number): void;
    getImageData(x: number, y: number, w: number, h: number): ImageDataLike;
  }
  interface Gl {
    readonly TEXTURE_2D: number;
    readonly RGBA: number;
    readonly UNSIGNED_BYTE: number;
    readonly VERTEX_SHADER: number;
    readonly FRAGMENT_SHADER: number;
    readonly ARRAY_BUFFER: number;
    readonly STATIC_DRAW: number;
    readonly FLOAT: number;
    readonly TRIANGLE_STRIP: number;
    readonly TEXTURE_MIN_FILTER: number;
    readonly TEXTURE_MAG_FILTER: number;
    readonly TEXTURE_WRAP_S: number;
    readonly TEXTURE_WRAP_T: number;
    readonly NEAREST: number;
    readonly CLAMP_TO_EDGE: number;
    createShader(type: number): object | null;
    shaderSource(shader: object, source: string): void;
    compileShader(shader: object): void;
    createProgram(): object | null;
    attachShader(program: object, shader: object): void;
    linkProgram(program: object): void;
    useProgram(program: object): void;
    createBuffer(): object | null;
    bindBuffer(target: number, buffer: object): void;
    bufferData(target: number, data: Float32Array, usage: number): void;
    getAttribLocation(program: object, name: string): number;
    enableVertexAttribArray(index: number): void;
    vertexAttribPointer(index: number, size: number, type: number, norm: boolean, stride: number, off: number): void;
    createTexture(): object | null;
    bindTexture(target: number, texture: object): void;
    texParameteri(target: number, name: number, value: number): void;
    texImage2D(
      target: number,
      level: number,
      internal: number,
      w: number,
      h: number,
      border: number,
      format: number,
      type: number,
      pixels: Uint8Array | null,
    ): void;
    texSubImage2D(
      target: number,
      level: number,
      x: number,
      y: number,
      w: number,
      h: number,
      format: number,
      type: number,
      pixels: Uint8Array,
    ): void;
    viewport(x: number, y: number, w: number, h: number): void;
    drawArrays(mode: number, first: number, count: number): void;
    readPixels(x: number, y: number, w: number, h: number, format: number, type: number, out: Uint8Array): void;
    getExtension(name: string): { readonly UNMASKED_RENDERER_WEBGL: number } | null;
    getParameter(name: number): unknown;
  }
  interface CanvasLike {
    width: number;
    height: number;
    getContext(kind: '2d', options: object): Ctx2d | null;
    getContext(kind: 'webgl2' | 'webgl', options: object): Gl | null;
  }
  const page = globalThis as unknown as {
    document: { createElement(tag: 'canvas'): CanvasLike; body: { append(node: CanvasLike): void } };
    ImageData: new (data: Uint8ClampedArray, width: number, height: number) => ImageDataLike;
  };

  const { screen, batch } = args;
  const newCanvas = (): CanvasLike => {
    const canvas = page.document.createElement('canvas');
    canvas.width = screen.width;
    canvas.height = screen.height;
    page.document.body.append(canvas);
    return canvas;
  };
  const timing = (xs: number[]): Timing => {
    xs.sort((a, b) => a - b);
    return {
      mean: xs.reduce((sum, x) => sum + x, 0) / xs.length,
      median: xs[Math.floor(xs.length / 2)] ?? NaN,
      p95: xs[Math.floor(xs.length * 0.95)] ?? NaN,
    };
  };
  /** A few distinct frames' worth of pixels, so nothing can be cached between ops. */
  const pixelSets = (w: number, h: number): Uint8Array[] =>
    [0, 1, 2, 3].map((k) => {
      const bytes = new Uint8Array(w * h * 4);
      for (let i = 0; i < bytes.length; i += 4) {
        bytes[i] = (i + k * 40) & 255;
        bytes[i + 1] = (i >> 8) & 255;
        bytes[i + 2] = k * 60;
        bytes[i + 3] = 255;
      }
      return bytes;
    });
  const position = (i: number, w: number, h: number) => ({
    x: (i * 97) % (screen.width - w + 1),
    y: (i * 61) % (screen.height - h + 1),
  });
  /** Runs `draw` per op, syncing each op or every `batch` ops; ms per op. */
  const measure = (
    iterations: number,
    draw: (i: number) => void,
    sync: () => void,
  ): { synced: Timing; batched: Timing } => {
    for (let i = 0; i < 5; i++) draw(i); // warm-up
    sync();
    const synced: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now();
      draw(i);
      sync();
      synced.push(performance.now() - t0);
    }
    const batched: number[] = [];
    for (let i = 0; i < Math.max(3, Math.ceil(iterations / batch)); i++) {
      const t0 = performance.now();
      for (let j = 0; j < batch; j++) draw(i * batch + j);
      sync();
      batched.push((performance.now() - t0) / batch);
    }
    return { synced: timing(synced), batched: timing(batched) };
  };

  // ---- 2D: putImageData of a view over the frame's bytes (what the renderer does).
  const ctx = newCanvas().getContext('2d', { alpha: false, desynchronized: true });
  if (!ctx) throw new Error('no 2D context');

  // ---- WebGL: one screen-sized texture, texSubImage2D per rect, then draw the quad.
  const gl = newCanvas().getContext('webgl2', { alpha: false, antialias: false, preserveDrawingBuffer: false });
  let webglRenderer: string | null = null;
  if (gl) {
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    webglRenderer = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : 'unknown';
    const shader = (type: number, source: string): object => {
      const s = gl.createShader(type);
      if (!s) throw new Error('createShader');
      gl.shaderSource(s, source);
      gl.compileShader(s);
      return s;
    };
    const program = gl.createProgram();
    const quad = gl.createBuffer();
    const texture = gl.createTexture();
    if (!program || !quad || !texture) throw new Error('WebGL objects');
    gl.attachShader(
      program,
      shader(
        gl.VERTEX_SHADER,
        'attribute vec2 p; varying vec2 t; void main(){ t=(p+1.0)*0.5; t.y=1.0-t.y; gl_Position=vec4(p,0,1); }',
      ),
    );
    gl.attachShader(
      program,
      shader(
        gl.FRAGMENT_SHADER,
        'precision mediump float; uniform sampler2D s; varying vec2 t; void main(){ gl_FragColor=texture2D(s,t); }',
      ),
    );
    gl.linkProgram(program);
    gl.useProgram(program);
    gl.bindBuffer(gl.ARRAY_BUFFER, quad);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const at = gl.getAttribLocation(program, 'p');
    gl.enableVertexAttribArray(at);
    gl.vertexAttribPointer(at, 2, gl.FLOAT, false, 0, 0);
    gl.bindTexture(gl.TEXTURE_2D, texture);
    for (const [name, value] of [
      [gl.TEXTURE_MIN_FILTER, gl.NEAREST],
      [gl.TEXTURE_MAG_FILTER, gl.NEAREST],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE],
      [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE],
    ] as const) {
      gl.texParameteri(gl.TEXTURE_2D, name, value);
    }
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, screen.width, screen.height, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
    gl.viewport(0, 0, screen.width, screen.height);
  }
  const probe = new Uint8Array(4);

  const results: CaseResult[] = args.cases.map((c) => {
    const sets = pixelSets(c.width, c.height);
    const canvas2d = measure(
      c.iterations,
      (i) => {
        const bytes = sets[i % sets.length]!;
        const { x, y } = position(i, c.width, c.height);
        const view = new Uint8ClampedArray(bytes.buffer, bytes.byteOffset, bytes.length);
        ctx.putImageData(new page.ImageData(view, c.width, c.height), x, y);
      },
      () => void ctx.getImageData(0, 0, 1, 1),
    );
    const webgl = gl
      ? measure(
          c.iterations,
          (i) => {
            const { x, y } = position(i, c.width, c.height);
            gl.texSubImage2D(gl.TEXTURE_2D, 0, x, y, c.width, c.height, gl.RGBA, gl.UNSIGNED_BYTE, sets[i % 4]!);
          },
          // One quad per frame, however many rectangles it carried.
          () => {
            gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
            gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, probe);
          },
        )
      : null;
    return { name: c.name, canvas2d, webgl };
  });
  return { webglRenderer, cases: results };
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // SwiftShader WebGL must be allowed explicitly in current Chromium when there is no GPU.
  args: ['--no-sandbox', '--disable-background-networking', '--enable-unsafe-swiftshader'],
  timeout: 30_000,
});
let result: PageResult;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(300_000);
  result = await page.evaluate(runInPage, { screen, cases, batch: BATCH });
} finally {
  await browser.close();
}

const ms = (t: Timing | undefined) => (t ? `${t.mean.toFixed(3)} / ${t.p95.toFixed(3)}` : 'n/a');
console.log(`Chromium ${browser.version()}, WebGL renderer: ${result.webglRenderer ?? 'unavailable'}`);
console.log('ms per rectangle, mean / p95 (page timer resolution: 0.1 ms)');
console.log(['rect', '2D synced', '2D batched', 'WebGL synced', 'WebGL batched'].map((s) => s.padEnd(22)).join(''));
for (const c of result.cases) {
  console.log(
    [c.name, ms(c.canvas2d.synced), ms(c.canvas2d.batched), ms(c.webgl?.synced), ms(c.webgl?.batched)]
      .map((s) => s.padEnd(22))
      .join(''),
  );
}
/** The method with the lower batched mean per rectangle; each size counts as one vote. */
const votes = result.cases.map((c) => (c.webgl && c.webgl.batched.mean < c.canvas2d.batched.mean ? 'webgl' : '2d'));
const winner = votes.filter((v) => v === '2d').length >= votes.length / 2 ? '2d' : 'webgl';
console.log(`faster (batched, by size): ${votes.join(', ')} → ${winner}`);
const json = {
  bench: 'canvas',
  chromium: browser.version(),
  webglRenderer: result.webglRenderer,
  screen,
  winner,
  cases: result.cases.map((c) => ({
    rect: c.name,
    canvas2d: {
      syncedMs: round(c.canvas2d.synced.mean, 3),
      syncedP95Ms: round(c.canvas2d.synced.p95, 3),
      batchedMs: round(c.canvas2d.batched.mean, 3),
    },
    webgl: c.webgl
      ? {
          syncedMs: round(c.webgl.synced.mean, 3),
          syncedP95Ms: round(c.webgl.synced.p95, 3),
          batchedMs: round(c.webgl.batched.mean, 3),
        }
      : null,
  })),
};
console.log(JSON.stringify(json));
