#!/bin/busybox sh
# UltraCloud guest initramfs /init, written by ultracloud-guest-image: loads the drivers the
# kernel lacks, mounts the root disk and hands over to the guest agent, /sbin/init on that disk.
# Problems are reported on the console as one ULTRACLOUD-GUEST-ERROR line, then the VM powers off.
/bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid devtmpfs /dev
exec </dev/console >/dev/console 2>&1

fail() {
    echo "ULTRACLOUD-GUEST-ERROR initramfs: $*"
    sleep 1
    poweroff -f
}

# In dependency order (computed from modules.dep when the image was built).
for m in @MODULES@; do
    insmod "/lib/modules/$m" || echo "ULTRACLOUD-GUEST-ERROR initramfs: insmod $m failed"
done

root=/dev/vda
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
    esac
done

i=0
while [ ! -b "$root" ]; do
    i=$((i + 1))
    [ "$i" -gt 300 ] && fail "no root disk $root after 30 s"
    sleep 0.1
done
mount -t ext4 -o rw,noatime "$root" /newroot || fail "cannot mount $root"
[ -x /newroot/sbin/init ] || fail "$root has no /sbin/init"
for fs in dev proc sys; do
    mount --move "/$fs" "/newroot/$fs" || fail "cannot move /$fs to the root disk"
done
exec switch_root /newroot /sbin/init
fail "switch_root failed"
