/**
 * Everything that defines the sandbox guest, named once: Debian packages of the
 * rootfs, initramfs modules, kernel command line, Chromium flags, agent and
 * proxy ports, limits. The build hashes these into its cache keys, the smoke
 * test and (later) the VMM read them from here.
 */

/** Bump when the build steps change in a way the inputs below do not show. */
export const GUEST_BUILD_REVISION = 2;

export const DEBIAN_SUITE = 'bookworm';

/** Packages installed on top of mmdebstrap's `minbase` variant. */
export const ROOTFS_PACKAGES: readonly string[] = [
  'chromium',
  // The kiosk compositor. Not cage (bookworm's 0.1.4 keeps an output's first
  // mode for good): sway sets a new mode when the agent asks over its IPC.
  'sway',
  'seatd',
  'fonts-dejavu-core',
  'socat', // vsock ↔ stdio and the guest-local proxy forwarder
  'udev', // classifies the virtio keyboard and pointer: libinput (in sway) ignores devices udev has not seen
];

/**
 * dpkg path filters applied while packages unpack (so the files never land):
 * what a kiosk viewer never reads. Copyright files stay (licence compliance).
 */
export const DPKG_PATH_EXCLUDES: readonly string[] = [
  '/usr/share/man/*',
  '/usr/share/info/*',
  '/usr/share/doc/*',
  '/usr/share/locale/*',
  '/usr/share/lintian/*',
  '/usr/share/bash-completion/*',
];
export const DPKG_PATH_INCLUDES: readonly string[] = ['/usr/share/doc/*/copyright'];

/** Removed after installation (paths relative to the rootfs, no globs). */
export const ROOTFS_REMOVE: readonly string[] = [
  'usr/lib/chromium/libVkLayer_khronos_validation.so', // Vulkan debugging layer, 23 MB
  'usr/lib/chromium/libVkLayer_khronos_validation.so.TOC',
  'var/cache/apt',
  'var/lib/apt/lists',
  'var/log',
  'var/cache/debconf/templates.dat-old',
];

/** The unprivileged user sway and Chromium run as. */
export const VIEWER_USER = { name: 'viewer', uid: 1000, gid: 1000, home: '/home/viewer' } as const;

/**
 * Initramfs modules (dependencies are added from modules.dep). Order matters
 * only in that `virtio_mmio` must come before the device drivers' probes,
 * which the dependency order already guarantees. The guest finds every device
 * through ACPI (`LNRO0005`), hence `virtio_mmio` and not a `device=` parameter.
 */
export const INITRAMFS_MODULES: readonly string[] = [
  'virtio_mmio',
  'virtio_blk',
  'squashfs',
  'overlay',
  'virtio-gpu',
  'virtio_input', // keyboard / pointer from the VMM
  'evdev',
  'virtio_console', // agent transport in tests (virtserialport)
  'vmw_vsock_virtio_transport', // agent transport in the product (virtio-vsock)
  'virtio-rng',
];

/** Device names inside the guest. */
export const ROOTFS_DEVICE = '/dev/vda';
/** The virtserialport name the smoke test (and other non-vsock hosts) use for the agent. */
export const AGENT_SERIAL_PORT_NAME = 'org.belljar.agent.0';
/** The fixed vsock port the agent listens on in the product. */
export const AGENT_VSOCK_PORT = 1024;
/** Chromium's proxy inside the guest: a socat forwarder to the host proxy over vsock. */
export const GUEST_PROXY_PORT = 3128;
/** The host side (CID 2) vsock port the guest's proxy forwarder connects to. */
export const HOST_PROXY_VSOCK_PORT = 3128;
/** Chromium's DevTools endpoint, reachable only on the guest's loopback (the agent uses it). */
export const DEVTOOLS_PORT = 9222;

/** The kernel command line (the host appends `belljar.agent=…`). */
export const KERNEL_CMDLINE: readonly string[] = [
  'console=ttyS0',
  'quiet',
  'loglevel=4',
  'panic=-1', // a guest panic ends the VM at once instead of hanging
  'rootwait',
  'mitigations=off', // the VM boundary is the security boundary; inside it speed wins
  'i8042.noaux',
];

export type AgentTransport = 'vsock' | 'virtio-port' | 'none';

/** Chromium's flags (the agent adds the page to open). */
export const CHROMIUM_FLAGS: readonly string[] = [
  '--ozone-platform=wayland',
  '--kiosk',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-gpu',
  '--disable-gpu-compositing',
  '--disable-breakpad',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider',
  '--password-store=basic',
  '--user-data-dir=/tmp/chromium',
  `--remote-debugging-port=${DEVTOOLS_PORT}`,
  '--remote-debugging-address=127.0.0.1',
  `--proxy-server=http://127.0.0.1:${GUEST_PROXY_PORT}`,
  // Chromium sends loopback addresses around the proxy by default. In the guest
  // that is the guest's own loopback (its DevTools port): send them to the host's
  // proxy too, which refuses loopback (or, in tests, reaches an allowed fixture).
  '--proxy-bypass-list=<-loopback>',
];

/**
 * Items above this size are refused before a VM boots: the agent copies the
 * item into the guest's memory (tmpfs), and Chromium's viewers slow down long
 * before it under software rendering.
 */
export const MAX_ITEM_BYTES = 128 * 1024 * 1024;

/** The squashfs budget from the issue (CI time and disk). */
export const ROOTFS_BUDGET_BYTES = 350 * 1024 * 1024;
