/**
 * The guest's boot scripts, both run by busybox `sh`.
 *
 * Stage 1 (`/init.d/main` in the initramfs, after the modules are loaded):
 * mounts the read-only squashfs rootfs from /dev/vda under a tmpfs overlay,
 * copies busybox, stage 2 and the agent into the new root's /run/belljar and
 * switches root.
 *
 * Stage 2 (`/run/belljar/stage2.sh`, PID 1 in the new root): mounts the
 * runtime filesystems, starts seatd (root), sway + Chromium (as the viewer
 * user), the guest-local proxy forwarder and the agent on the transport named
 * by `belljar.agent=` on the kernel command line.
 *
 * Both record `uptime` marks in /run/belljar/timings; the agent reports them
 * in its `ready` message.
 */
import {
  AGENT_SERIAL_PORT_NAME,
  AGENT_VSOCK_PORT,
  CHROMIUM_FLAGS,
  GUEST_PROXY_PORT,
  HOST_PROXY_VSOCK_PORT,
  MAX_ITEM_BYTES,
  ROOTFS_DEVICE,
  VIEWER_USER,
} from './config.js';

/** Where stage 2, busybox and the agent live in the running guest. */
export const GUEST_RUN_DIR = '/run/belljar';
/** Paths inside the initramfs. */
export const INITRAMFS_STAGE2 = '/belljar/stage2.sh';
export const INITRAMFS_AGENT = '/belljar/belljar-agent.pl';

/** Single-quotes a word for a POSIX shell. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function stage1Script(): string {
  return `set -u
mark() { read -r up _ < /proc/uptime; echo "$1 $up" >> /run/timings; }
fail() { echo "belljar-init: $*" > /dev/console; sleep 2; poweroff -f; }
mkdir -p /run /lower /rw /newroot
mark init
i=0
while [ ! -b ${ROOTFS_DEVICE} ]; do
  i=$((i + 1)); [ $i -gt 200 ] && fail "no root disk ${ROOTFS_DEVICE}"
  sleep 0.05
done
mount -t squashfs -o ro ${ROOTFS_DEVICE} /lower || fail "cannot mount the rootfs"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount the tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "cannot mount the overlay"
mark rootfs
mkdir -p /newroot${GUEST_RUN_DIR}
cp /bin/busybox /newroot${GUEST_RUN_DIR}/busybox
cp ${INITRAMFS_STAGE2} ${INITRAMFS_AGENT} /newroot${GUEST_RUN_DIR}/
cat /run/timings > /newroot${GUEST_RUN_DIR}/timings
ip link set lo up
[ -w /proc/sys/kernel/unprivileged_userns_clone ] && echo 1 > /proc/sys/kernel/unprivileged_userns_clone
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot ${GUEST_RUN_DIR}/busybox sh ${GUEST_RUN_DIR}/stage2.sh
`;
}

/**
 * sway as a kiosk: no X server, no bars, borders, key bindings or error bar;
 * Chromium (started by the launcher script) fullscreen. The output keeps the
 * mode the display offers at start; the agent sets a new one over sway's IPC
 * when the host's window changes size.
 */
export function swayConfig(): string {
  return `xwayland disable
swaynag_command -
default_border none
default_floating_border none
for_window [app_id="^chromium"] fullscreen enable
exec ${GUEST_RUN_DIR}/busybox sh ${GUEST_RUN_DIR}/${VIEWER_LAUNCHER}
`;
}

/**
 * Chromium's command line, run by sway (its `exec` goes through `sh -c`: quoting
 * stays ours). When Chromium ends, so does sway, as a kiosk should: stage 2
 * then reports the viewer's end and its last log lines on the console.
 */
export function viewerLauncher(): string {
  const chromium = ['/usr/bin/chromium', ...CHROMIUM_FLAGS].map(shellQuote).join(' ');
  return `${chromium} about:blank
echo "belljar-viewer: Chromium exited ($?)" >&2
exec swaymsg exit
`;
}

/**
 * With belljar.debug=input: the lines of sway's Wayland protocol log (libwayland
 * writes it to stderr with WAYLAND_DEBUG=server) that carry input to a client,
 * and those that change where input goes: the seat's devices, surfaces made and
 * destroyed (a press can go to a surface that is gone), window (de)activation.
 */
export const INPUT_DEBUG_PATTERN = [
  String.raw`wl_pointer@[0-9]+\.(enter|leave|motion|button)`,
  String.raw`wl_keyboard@[0-9]+\.(enter|leave)`,
  String.raw`wl_seat@[0-9]+\.(capabilities|get_pointer|get_keyboard)`,
  String.raw`wl_surface@[0-9]+\.destroy`,
  'create_surface|get_subsurface',
  String.raw`xdg_toplevel@[0-9]+\.configure|ack_configure`,
].join('|');

/** How long stage 2 waits for udev to process the input and DRM devices before it starts sway. */
const UDEV_SETTLE_SECONDS = 60;

/** Files stage 2 writes into GUEST_RUN_DIR before starting sway. */
const SWAY_CONFIG = 'sway.conf';
const VIEWER_LAUNCHER = 'viewer.sh';

export function stage2Script(): string {
  const bb = `${GUEST_RUN_DIR}/busybox`;
  const { name, uid, gid, home } = VIEWER_USER;
  const runtimeDir = `/run/user/${uid}`;
  return `BB=${bb}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mark() { read -r up _ < /proc/uptime; echo "$1 $up" >> ${GUEST_RUN_DIR}/timings; }
mark stage2
$BB mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts 2>/dev/null || { $BB mkdir -p /dev/pts; $BB mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts; }
$BB mkdir -p /dev/shm && $BB mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
$BB mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
$BB hostname belljar
$BB mkdir -p ${runtimeDir} ${GUEST_RUN_DIR}/items
$BB chown ${uid}:${gid} ${runtimeDir}
$BB chmod 0700 ${runtimeDir}
$BB chmod 0755 ${GUEST_RUN_DIR}/items

arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "\${w#*=}"; return;; esac; done; }
TRANSPORT=$(arg belljar.agent)
OPEN=$(arg belljar.open)

# udev tags the input devices (keyboard, pointer) for libinput: sway gets no
# input from devices udev has not processed. Only input and DRM are triggered.
# sway starts once udev is done: it then takes the devices as it starts (see
# NO_INPUT_YET below for when udev is not done in time).
NO_INPUT_YET=WLR_LIBINPUT_NO_DEVICES=1
if /usr/lib/systemd/systemd-udevd --daemon --resolve-names=never > /dev/null 2>&1; then
  udevadm trigger --type=devices --action=add --subsystem-match=input --subsystem-match=drm
  if udevadm settle --timeout=${UDEV_SETTLE_SECONDS}; then
    NO_INPUT_YET=
  else
    echo "belljar-init: udev still busy after ${UDEV_SETTLE_SECONDS} s; input may reach the viewer late" > /dev/console
  fi
fi
mark udev

# seatd hands the DRM and input devices to sway, which must not run as root.
seatd -u ${name} -g ${name} > /dev/console 2>&1 &
i=0; while [ ! -S /run/seatd.sock ] && [ $i -lt 100 ]; do $BB sleep 0.05; i=$((i + 1)); done
mark seatd

# The guest has no network card: http(s) goes to a guest-local port that is
# forwarded over vsock to the host's filtering proxy (when vsock exists).
if [ -e /dev/vsock ]; then
  socat TCP-LISTEN:${GUEST_PROXY_PORT},bind=127.0.0.1,reuseaddr,fork VSOCK-CONNECT:2:${HOST_PROXY_VSOCK_PORT} > /dev/null 2>&1 &
fi

cat > ${GUEST_RUN_DIR}/${SWAY_CONFIG} <<'BELLJAR_EOF'
${swayConfig()}BELLJAR_EOF
cat > ${GUEST_RUN_DIR}/${VIEWER_LAUNCHER} <<'BELLJAR_EOF'
${viewerLauncher()}BELLJAR_EOF
# sway's wlroots (0.15) refuses to start without an input device unless
# WLR_LIBINPUT_NO_DEVICES=1, and with it set does not take the devices libinput
# found at start until the first input event arrives: the browser then binds
# its pointer only as that first click comes in, and the click loses its press.
# So it is set only when udev was not done in time (above).
# belljar.debug=input: sway, the Wayland server, logs the protocol it speaks.
VIEWER_DEBUG_ENV=
[ "$(arg belljar.debug)" = input ] && VIEWER_DEBUG_ENV=WAYLAND_DEBUG=server
# The viewer's output goes to a tmpfs log (a serial console is slow, and
# Chromium is chatty); the log's tail reaches the console if the viewer dies.
(
/usr/bin/setpriv --reuid=${uid} --regid=${gid} --clear-groups \\
  $BB env -i PATH=/usr/bin:/bin HOME=${home} USER=${name} XDG_RUNTIME_DIR=${runtimeDir} \\
  LIBSEAT_BACKEND=seatd WLR_RENDERER=pixman WLR_NO_HARDWARE_CURSORS=1 $NO_INPUT_YET $VIEWER_DEBUG_ENV \\
  sway -c ${GUEST_RUN_DIR}/${SWAY_CONFIG} > ${GUEST_RUN_DIR}/viewer.log 2>&1
  echo "belljar-init: the viewer exited ($?); its last words:"
  $BB tail -n 40 ${GUEST_RUN_DIR}/viewer.log
) > /dev/console 2>&1 &
# belljar.debug=viewer: the viewer's log goes to the console as it is written
# (tail -F: the log may not exist yet).
[ "$(arg belljar.debug)" = viewer ] && $BB tail -F ${GUEST_RUN_DIR}/viewer.log > /dev/console 2>&1 &
# belljar.debug=input: the pointer and keyboard events sway sends its clients go to the console.
[ "$(arg belljar.debug)" = input ] && $BB tail -F ${GUEST_RUN_DIR}/viewer.log | $BB grep -E '${INPUT_DEBUG_PATTERN}' > /dev/console 2>&1 &
mark viewer

AGENT="perl ${GUEST_RUN_DIR}/belljar-agent.pl --max-item ${MAX_ITEM_BYTES}"
[ -n "$OPEN" ] && AGENT="$AGENT --open-disk $OPEN"
case "$TRANSPORT" in
  virtio-port)
    PORT=
    for n in /sys/class/virtio-ports/*/name; do
      [ "$($BB cat "$n" 2>/dev/null)" = "${AGENT_SERIAL_PORT_NAME}" ] && PORT=/dev/$($BB basename "$($BB dirname "$n")")
    done
    if [ -n "$PORT" ]; then
      # A virtio port opens once: one read-write descriptor serves both directions.
      ( while :; do $AGENT 0<>"$PORT" 1>&0; $BB sleep 1; done ) &
    else
      echo "belljar-init: no virtio port named ${AGENT_SERIAL_PORT_NAME}" > /dev/console
    fi
    ;;
  vsock)
    socat VSOCK-LISTEN:${AGENT_VSOCK_PORT},reuseaddr,fork EXEC:"$AGENT" > /dev/console 2>&1 &
    ;;
  *)
    [ -n "$OPEN" ] && ( $AGENT < /dev/null > /dev/null ) &
    ;;
esac
mark agent_started

# PID 1: reap children forever (the VM ends by power-off from the agent or the host).
while :; do wait; $BB sleep 1; done
`;
}
