/**
 * Numbers from the virtio 1.2 specification (OASIS, "Virtual I/O Device
 * (VIRTIO) Version 1.2") used by the transport, the split virtqueue and the
 * device models. Feature bits are bigints because the feature space is 64 bits
 * wide (VIRTIO_F_VERSION_1 is bit 32).
 */

// ---- Device status (spec 2.1) ----
export const STATUS_ACKNOWLEDGE = 0x01;
export const STATUS_DRIVER = 0x02;
export const STATUS_DRIVER_OK = 0x04;
export const STATUS_FEATURES_OK = 0x08;
export const STATUS_DEVICE_NEEDS_RESET = 0x40;
export const STATUS_FAILED = 0x80;

// ---- Device types (spec 5) ----
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_ID_RNG = 4;
export const VIRTIO_ID_GPU = 16;
export const VIRTIO_ID_INPUT = 18;
export const VIRTIO_ID_VSOCK = 19;

// ---- Reserved (transport / ring) feature bits (spec 6) ----
export const VIRTIO_RING_F_INDIRECT_DESC = 1n << 28n;
export const VIRTIO_RING_F_EVENT_IDX = 1n << 29n;
export const VIRTIO_F_VERSION_1 = 1n << 32n;
export const VIRTIO_F_ACCESS_PLATFORM = 1n << 33n;
export const VIRTIO_F_RING_PACKED = 1n << 34n;
export const VIRTIO_F_IN_ORDER = 1n << 35n;

// ---- virtio-mmio register map, version 2 (spec 4.2.2) ----
export const MMIO_MAGIC_VALUE = 0x000;
export const MMIO_VERSION = 0x004;
export const MMIO_DEVICE_ID = 0x008;
export const MMIO_VENDOR_ID = 0x00c;
export const MMIO_DEVICE_FEATURES = 0x010;
export const MMIO_DEVICE_FEATURES_SEL = 0x014;
export const MMIO_DRIVER_FEATURES = 0x020;
export const MMIO_DRIVER_FEATURES_SEL = 0x024;
export const MMIO_QUEUE_SEL = 0x030;
export const MMIO_QUEUE_NUM_MAX = 0x034;
export const MMIO_QUEUE_NUM = 0x038;
export const MMIO_QUEUE_READY = 0x044;
export const MMIO_QUEUE_NOTIFY = 0x050;
export const MMIO_INTERRUPT_STATUS = 0x060;
export const MMIO_INTERRUPT_ACK = 0x064;
export const MMIO_STATUS = 0x070;
export const MMIO_QUEUE_DESC_LOW = 0x080;
export const MMIO_QUEUE_DESC_HIGH = 0x084;
export const MMIO_QUEUE_DRIVER_LOW = 0x090;
export const MMIO_QUEUE_DRIVER_HIGH = 0x094;
export const MMIO_QUEUE_DEVICE_LOW = 0x0a0;
export const MMIO_QUEUE_DEVICE_HIGH = 0x0a4;
export const MMIO_SHM_SEL = 0x0ac;
export const MMIO_SHM_LEN_LOW = 0x0b0;
export const MMIO_SHM_LEN_HIGH = 0x0b4;
export const MMIO_SHM_BASE_LOW = 0x0b8;
export const MMIO_SHM_BASE_HIGH = 0x0bc;
export const MMIO_QUEUE_RESET = 0x0c0;
export const MMIO_CONFIG_GENERATION = 0x0fc;
export const MMIO_CONFIG = 0x100;
/** Size of one virtio-mmio register window (registers + config space). */
export const MMIO_WINDOW_SIZE = 0x200;

/** "virt" read as a little-endian u32. */
export const MMIO_MAGIC = 0x74726976;
export const MMIO_VERSION_2 = 2;
/**
 * Our VendorID: "BJAR" as a little-endian u32 (0x52414a42). Linux only matches
 * virtio drivers on DeviceID (vendor VIRTIO_DEV_ANY_ID), so any value works.
 */
export const BELLJAR_VENDOR_ID = 0x52414a42;

/** InterruptStatus bits (spec 4.2.2). */
export const INTERRUPT_USED_BUFFER = 0x1;
export const INTERRUPT_CONFIG_CHANGE = 0x2;

// ---- Split virtqueue layout (spec 2.7) ----
export const VIRTQ_DESC_F_NEXT = 0x1;
export const VIRTQ_DESC_F_WRITE = 0x2;
export const VIRTQ_DESC_F_INDIRECT = 0x4;
/** Size of one descriptor: addr u64, len u32, flags u16, next u16. */
export const VIRTQ_DESC_SIZE = 16;
/** Largest queue size the split ring format allows. */
export const VIRTQ_MAX_SIZE = 32768;
/** Required alignments of the three areas (spec 2.7, "Virtqueue Alignment"). */
export const VIRTQ_DESC_ALIGN = 16;
export const VIRTQ_AVAIL_ALIGN = 2;
export const VIRTQ_USED_ALIGN = 4;

// ---- virtio-blk (spec 5.2) ----
export const VIRTIO_BLK_F_SIZE_MAX = 1n << 1n;
export const VIRTIO_BLK_F_SEG_MAX = 1n << 2n;
export const VIRTIO_BLK_F_GEOMETRY = 1n << 4n;
export const VIRTIO_BLK_F_RO = 1n << 5n;
export const VIRTIO_BLK_F_BLK_SIZE = 1n << 6n;
export const VIRTIO_BLK_F_FLUSH = 1n << 9n;
export const VIRTIO_BLK_F_TOPOLOGY = 1n << 10n;
export const VIRTIO_BLK_F_CONFIG_WCE = 1n << 11n;
export const VIRTIO_BLK_F_MQ = 1n << 12n;
export const VIRTIO_BLK_F_DISCARD = 1n << 13n;
export const VIRTIO_BLK_F_WRITE_ZEROES = 1n << 14n;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** virtio-blk always addresses the disk in 512-byte sectors. */
export const VIRTIO_BLK_SECTOR_SIZE = 512;
/** Length of the GET_ID answer: a NUL-padded ASCII serial. */
export const VIRTIO_BLK_ID_BYTES = 20;
/** Request header: type u32, reserved u32, sector u64. */
export const VIRTIO_BLK_OUTHDR_SIZE = 16;
