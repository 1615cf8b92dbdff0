/**
 * Numbers and struct layouts of the virtio-gpu protocol (virtio 1.2, section
 * 5.7, "GPU Device"), 2D subset. All fields are little-endian; offsets are
 * byte offsets from the start of each struct.
 */

// ---- Feature bits (5.7.3) ----
/** 3D (virgl) commands. Not offered. */
export const VIRTIO_GPU_F_VIRGL = 1n << 0n;
/** VIRTIO_GPU_CMD_GET_EDID. Offered. */
export const VIRTIO_GPU_F_EDID = 1n << 1n;
export const VIRTIO_GPU_F_RESOURCE_UUID = 1n << 2n;
export const VIRTIO_GPU_F_RESOURCE_BLOB = 1n << 3n;
export const VIRTIO_GPU_F_CONTEXT_INIT = 1n << 4n;

// ---- Config space (5.7.4): events_read u32, events_clear u32, num_scanouts u32, num_capsets u32 ----
export const GPU_CONFIG_EVENTS_READ = 0;
export const GPU_CONFIG_EVENTS_CLEAR = 4;
export const GPU_CONFIG_NUM_SCANOUTS = 8;
export const GPU_CONFIG_NUM_CAPSETS = 12;
export const GPU_CONFIG_SIZE = 16;
/** events_read bit: the display configuration changed; re-read it with GET_DISPLAY_INFO. */
export const VIRTIO_GPU_EVENT_DISPLAY = 1 << 0;

// ---- Queues (5.7.2) ----
export const GPU_CONTROL_QUEUE = 0;
export const GPU_CURSOR_QUEUE = 1;

// ---- Command and response types (5.7.6.7) ----
// 2D commands
export const VIRTIO_GPU_CMD_GET_DISPLAY_INFO = 0x0100;
export const VIRTIO_GPU_CMD_RESOURCE_CREATE_2D = 0x0101;
export const VIRTIO_GPU_CMD_RESOURCE_UNREF = 0x0102;
export const VIRTIO_GPU_CMD_SET_SCANOUT = 0x0103;
export const VIRTIO_GPU_CMD_RESOURCE_FLUSH = 0x0104;
export const VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D = 0x0105;
export const VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING = 0x0106;
export const VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING = 0x0107;
export const VIRTIO_GPU_CMD_GET_CAPSET_INFO = 0x0108;
export const VIRTIO_GPU_CMD_GET_CAPSET = 0x0109;
export const VIRTIO_GPU_CMD_GET_EDID = 0x010a;
export const VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID = 0x010b;
export const VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB = 0x010c;
export const VIRTIO_GPU_CMD_SET_SCANOUT_BLOB = 0x010d;
// 3D commands (not implemented; answered ERR_UNSPEC)
export const VIRTIO_GPU_CMD_CTX_CREATE = 0x0200;
// cursor commands
export const VIRTIO_GPU_CMD_UPDATE_CURSOR = 0x0300;
export const VIRTIO_GPU_CMD_MOVE_CURSOR = 0x0301;
// success responses
export const VIRTIO_GPU_RESP_OK_NODATA = 0x1100;
export const VIRTIO_GPU_RESP_OK_DISPLAY_INFO = 0x1101;
export const VIRTIO_GPU_RESP_OK_CAPSET_INFO = 0x1102;
export const VIRTIO_GPU_RESP_OK_CAPSET = 0x1103;
export const VIRTIO_GPU_RESP_OK_EDID = 0x1104;
// error responses
export const VIRTIO_GPU_RESP_ERR_UNSPEC = 0x1200;
export const VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY = 0x1201;
export const VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID = 0x1202;
export const VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID = 0x1203;
export const VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID = 0x1204;
export const VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER = 0x1205;

// ---- virtio_gpu_ctrl_hdr: type u32, flags u32, fence_id u64, ctx_id u32, ring_idx u8, padding[3] ----
export const VIRTIO_GPU_FLAG_FENCE = 1 << 0;
export const VIRTIO_GPU_FLAG_INFO_RING_IDX = 1 << 1;
export const HDR_TYPE = 0;
export const HDR_FLAGS = 4;
export const HDR_FENCE_ID = 8;
export const HDR_CTX_ID = 16;
export const HDR_RING_IDX = 20;
export const CTRL_HDR_SIZE = 24;

/** Scanouts a device may have (the display-info response always has this many entries). */
export const VIRTIO_GPU_MAX_SCANOUTS = 16;

// ---- virtio_gpu_rect: x, y, width, height (u32 each) ----
export const RECT_SIZE = 16;

// ---- Command structs: offsets after the header and total sizes ----
/** GET_DISPLAY_INFO: the header alone. */
export const CMD_GET_DISPLAY_INFO_SIZE = CTRL_HDR_SIZE;
/**
 * virtio_gpu_resp_display_info: header, then VIRTIO_GPU_MAX_SCANOUTS ×
 * { rect r; u32 enabled; u32 flags } (24 bytes each).
 */
export const DISPLAY_ONE_SIZE = RECT_SIZE + 8;
export const RESP_DISPLAY_INFO_SIZE = CTRL_HDR_SIZE + VIRTIO_GPU_MAX_SCANOUTS * DISPLAY_ONE_SIZE;

/** virtio_gpu_cmd_get_edid: header, scanout u32, padding u32. */
export const CMD_GET_EDID_SCANOUT = 24;
export const CMD_GET_EDID_SIZE = 32;
/** virtio_gpu_resp_edid: header, size u32, padding u32, edid[1024]. */
export const RESP_EDID_SIZE_FIELD = 24;
export const RESP_EDID_DATA = 32;
export const RESP_EDID_MAX_BYTES = 1024;
export const RESP_EDID_SIZE = RESP_EDID_DATA + RESP_EDID_MAX_BYTES;

/** virtio_gpu_resource_create_2d: header, resource_id, format, width, height. */
export const CREATE_2D_RESOURCE_ID = 24;
export const CREATE_2D_FORMAT = 28;
export const CREATE_2D_WIDTH = 32;
export const CREATE_2D_HEIGHT = 36;
export const CMD_CREATE_2D_SIZE = 40;

/** virtio_gpu_resource_unref and _detach_backing: header, resource_id, padding. */
export const RESOURCE_ONLY_ID = 24;
export const CMD_RESOURCE_ONLY_SIZE = 32;

/** virtio_gpu_set_scanout: header, rect r, scanout_id, resource_id. */
export const SET_SCANOUT_RECT = 24;
export const SET_SCANOUT_SCANOUT_ID = 40;
export const SET_SCANOUT_RESOURCE_ID = 44;
export const CMD_SET_SCANOUT_SIZE = 48;

/** virtio_gpu_resource_flush: header, rect r, resource_id, padding. */
export const FLUSH_RECT = 24;
export const FLUSH_RESOURCE_ID = 40;
export const CMD_FLUSH_SIZE = 48;

/** virtio_gpu_transfer_to_host_2d: header, rect r, offset u64, resource_id, padding. */
export const TRANSFER_RECT = 24;
export const TRANSFER_OFFSET = 40;
export const TRANSFER_RESOURCE_ID = 48;
export const CMD_TRANSFER_SIZE = 56;

/**
 * virtio_gpu_resource_attach_backing: header, resource_id, nr_entries; then
 * nr_entries × virtio_gpu_mem_entry { addr u64, length u32, padding u32 }.
 */
export const ATTACH_RESOURCE_ID = 24;
export const ATTACH_NR_ENTRIES = 28;
export const CMD_ATTACH_SIZE = 32;
export const MEM_ENTRY_SIZE = 16;

/**
 * virtio_gpu_update_cursor (also MOVE_CURSOR): header, cursor_pos
 * { scanout_id, x, y, padding }, resource_id, hot_x, hot_y, padding.
 */
export const CURSOR_SCANOUT_ID = 24;
export const CURSOR_X = 28;
export const CURSOR_Y = 32;
export const CURSOR_RESOURCE_ID = 40;
export const CURSOR_HOT_X = 44;
export const CURSOR_HOT_Y = 48;
export const CMD_CURSOR_SIZE = 56;

/** The largest command struct we parse (everything but attach_backing's entry list). */
export const MAX_FIXED_COMMAND_SIZE = 56;

// ---- Formats (5.7.6.8, enum virtio_gpu_formats) ----
// Names list the components in memory byte order: B8G8R8X8 is bytes B, G, R, X,
// i.e. DRM_FORMAT_XRGB8888 on a little-endian guest (what Linux's driver uses
// for its primary plane; ARGB8888 = B8G8R8A8 for the cursor).
export const VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM = 1;
export const VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM = 2;
export const VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM = 3;
export const VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM = 4;
export const VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM = 67;
export const VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM = 68;
export const VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM = 121;
export const VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM = 134;

/** Every format is 32 bits per pixel. */
export const BYTES_PER_PIXEL = 4;

/**
 * For each supported format: the byte positions of red, green, blue and alpha
 * (or the unused X byte) within one 4-byte pixel, and whether the fourth
 * component is a real alpha channel.
 */
export interface FormatLayout {
  readonly name: string;
  readonly r: number;
  readonly g: number;
  readonly b: number;
  readonly a: number;
  readonly hasAlpha: boolean;
}

export const FORMATS: ReadonlyMap<number, FormatLayout> = new Map<number, FormatLayout>([
  [VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, { name: 'B8G8R8A8', r: 2, g: 1, b: 0, a: 3, hasAlpha: true }],
  [VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, { name: 'B8G8R8X8', r: 2, g: 1, b: 0, a: 3, hasAlpha: false }],
  [VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, { name: 'A8R8G8B8', r: 1, g: 2, b: 3, a: 0, hasAlpha: true }],
  [VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, { name: 'X8R8G8B8', r: 1, g: 2, b: 3, a: 0, hasAlpha: false }],
  [VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, { name: 'R8G8B8A8', r: 0, g: 1, b: 2, a: 3, hasAlpha: true }],
  [VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM, { name: 'X8B8G8R8', r: 3, g: 2, b: 1, a: 0, hasAlpha: false }],
  [VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, { name: 'A8B8G8R8', r: 3, g: 2, b: 1, a: 0, hasAlpha: true }],
  [VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, { name: 'R8G8B8X8', r: 0, g: 1, b: 2, a: 3, hasAlpha: false }],
]);

/** A rectangle in pixels. */
export interface Rect {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}
