/** What lab-side.ts prints, followed by the bridge's URL, once it serves (the test waits for it). */
export const LAB_SIDE_READY = 'lab-side: ready';
