# Boots a testedge machine: systemd as PID 1 of fresh namespaces, on the
# host's own files seen through overlays. Run by machine.go as PID 1 of new
# mount, PID, network, UTS and IPC namespaces (the cgroup namespace comes
# below), with a clean environment:
#
#   MACHINE_NAME     the machine's name, for container= and the target's description
#   MACHINE_CGROUP   its cgroup, relative to the host's hierarchies (made by machine.go)
#   MACHINE_DISK     overlay upper and work dirs: the disk, which outlives the boot
#   MACHINE_CONSOLE  the host's path of the pty this script runs on (stdio)
#   MACHINE_MASK     units masked for this boot (space-separated)
#   MACHINE_TARGET   the unit systemd boots into (written below)
set -eu

if [ "${1:-}" != cgroupns ]; then
	# Nothing mounted in here may reach the host: the copied mounts are
	# shared with the host's until made private, so this comes first.
	mount --make-rprivate /
	# Into a cgroup of our own in both hierarchies of the host's hybrid
	# layout (0 is "the writing process"), then a cgroup namespace rooted
	# there: systemd sees that cgroup as /, and the host sees the whole
	# machine under one directory it can empty and remove.
	for h in systemd unified; do
		echo 0 >"/sys/fs/cgroup/$h/$MACHINE_CGROUP/cgroup.procs"
	done
	exec unshare --cgroup -- /bin/sh "$0" cgroupns
fi

# Our own /proc: the new PID namespace's processes only.
mount -t proc -o nosuid,nodev,noexec proc /proc

# The disk: overlays over the host's /etc, /usr and /var, so the machine
# writes (units, nginx's config, /var/lib/edgeswitch, installed binaries)
# land in MACHINE_DISK and survive a reboot, while the host's files never
# change.
for top in etc usr var; do
	mount -t overlay overlay \
		-o "lowerdir=/$top,upperdir=$MACHINE_DISK/$top/upper,workdir=$MACHINE_DISK/$top/work" "/$top"
done

# A private /dev: the host's devtmpfs would hand the machine the host's
# disks, consoles and ttys. Only the nodes programs expect, a devpts of its
# own (newinstance) for ptys, /dev/shm, the /proc/self/fd links, and as
# /dev/console the terminal this script runs on, MACHINE_CONSOLE (a pty
# whose other end machine.go copies to console.log): systemd writes to
# /dev/console only if it is a terminal, so a plain file there stays empty.
# That pty is reachable by path only through the host's /dev, so the new
# /dev is built aside (on /run, which gets its own tmpfs below) and then
# moved over the host's.
[ "$MACHINE_CONSOLE" -ef /proc/self/fd/0 ] || { echo "$MACHINE_CONSOLE is not this script's terminal" >&2; exit 1; }
d=/run
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs $d
mknod -m 666 $d/null c 1 3
mknod -m 666 $d/zero c 1 5
mknod -m 666 $d/full c 1 7
mknod -m 666 $d/random c 1 8
mknod -m 666 $d/urandom c 1 9
mknod -m 666 $d/tty c 5 0
touch $d/console
mount --bind "$MACHINE_CONSOLE" $d/console
mkdir $d/pts $d/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts $d/pts
ln -s pts/ptmx $d/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $d/shm
ln -s /proc/self/fd $d/fd
ln -s /proc/self/fd/0 $d/stdin
ln -s /proc/self/fd/1 $d/stdout
ln -s /proc/self/fd/2 $d/stderr
mount --move $d /dev

# Fresh tmpfs where a real boot starts empty: /run (PID files, sockets, the
# masks below), /tmp, and nginx's logs (a load test's access log would
# otherwise fill the disk; one boot's logs are enough).
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /var/log/nginx

# Cgroups as systemd 252 expects them in the hybrid layout: a tmpfs holding
# name=systemd (v1, where it tracks units) and cgroup2 at unified, both
# rooted at our cgroup namespace, the tmpfs then read-only as systemd
# leaves it on a host. (systemd says it failed to create the cpu and
# cpuacct links there: harmless, those controllers are not ours.)
mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd,nosuid,nodev,noexec cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup/unified
mount -o remount,ro,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
# The kernel's knobs are the host's: read-only, as in any container (bind
# flags only, so the host's /sys and /proc/sys stay writable).
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys

# Everything else of the host's root is read-only in here (a per-mount
# flag: the host's / stays writable). Late, since a bind mount of a
# read-only mount is read-only too.
mount -o remount,bind,ro /

# The network namespace has nothing but lo, down: bring it up. Traffic to
# the machine stays on its own loopback (Machine.Dial enters it).
ip link set lo up

# Units that make no sense in a container (gettys, kernel modules and mounts,
# the host's own services: machineMask in machine.go) are masked for this
# boot only.
mkdir -p /run/systemd/system
for u in $MACHINE_MASK; do
	ln -s /dev/null "/run/systemd/system/$u"
done
# What the boot reaches: a normal multi-user boot, the system bus (edgeswitch
# talks to systemd over it) and Debian's nginx.service, unchanged.
cat >"/run/systemd/system/$MACHINE_TARGET" <<EOF
[Unit]
Description=testedge machine $MACHINE_NAME
Wants=multi-user.target dbus.socket nginx.service
After=multi-user.target dbus.socket nginx.service
AllowIsolate=yes
EOF

exec env -i container="$MACHINE_NAME" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/lib/systemd/systemd --system --unit="$MACHINE_TARGET" --log-target=console
