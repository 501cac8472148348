#!/bin/bash
# deps.sh - install what the build, the tests, the demo and the benchmarks
# need: Debian packages, and the unprivileged user the tests run jobs as.
# Idempotent, and quick (no apt-get at all) when everything is there.
set -euo pipefail

packages=(
	# build (libc6-dev's libc.a links podman-hpc-init statically)
	gcc libc6-dev make libslurm-dev pkg-config
	# the test cluster
	slurm-wlm slurmctld slurmd munge iproute2 util-linux procps bc
	# the metrics' tests scrape with curl
	curl
	# containers: runtimes, squashfs, fuse
	runc crun squashfs-tools squashfuse fuse3 uidmap
	# pulls: ISA-L's igzip decompresses gzip layers (pkg/image/layer);
	# squashfs-tools-ng's tar2sqfs squashes them as they stream in
	isal squashfs-tools-ng
	# registry and images
	docker-registry skopeo umoci debootstrap busybox-static ca-certificates
	# MPI on the host: ring programs are compiled here, bare-metal baselines run here
	openmpi-bin libopenmpi-dev mpich libmpich-dev
	# the seeds' container-per-rank baseline in make bench
	podman
	# dockerd:// end-to-end: the test starts its own dockerd in a node's
	# namespaces; the system's units are masked below
	docker.io
	# a user only NSS knows (directory-service users): libnss-extrausers
	libnss-extrausers
	# packages (make deb: dpkg-buildpackage, debhelper; make rpm: rpmbuild; make pkg-test: cpio,
	# systemd-socket-activate); rpm's rpmbuild also
	# builds the rpm test image's packages (test/images/rpm.sh)
	dpkg-dev debhelper rpm cpio systemd python3
	# lint
	shellcheck
	# make bench's scale plot (build/scale.png)
	gnuplot-nox
)
TEST_USER=${TEST_USER:-phpc-user}

[ "$(id -u)" = 0 ] || { echo "deps.sh: run as root (apt-get, useradd)" >&2; exit 1; }
command -v go >/dev/null || { echo "deps.sh: Go not found in PATH; install Go >= 1.24 (https://go.dev/dl) first" >&2; exit 1; }

missing=()
for p in "${packages[@]}"; do
	[[ $p == \#* ]] && continue
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# Packages must not start services here (slurmd, munge, the registry):
	# the test cluster starts its own, privately. An admin's policy-rc.d stays.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	# A system dockerd would listen on /var/run/docker.sock for the docker
	# group and put its docker0 bridge and NAT rules on the host: masked
	# (before the units exist, which works), for good; its init script is
	# policy-rc.d's. The dockerd:// test starts a private one of its own in
	# a test node's namespaces.
	if [[ " ${missing[*]} " == *" docker.io "* ]]; then
		for unit in docker.service docker.socket containerd.service; do
			# what systemctl mask does, also where systemd is not installed yet
			mkdir -p /etc/systemd/system && ln -sfn /dev/null "/etc/systemd/system/$unit"
		done
	fi
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# An ordinary user with a home: jobs run as them in the tests.
if ! id "$TEST_USER" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash --comment "podman-hpc test user" "$TEST_USER"
fi
# A user that only an NSS module knows, as a site's LDAP/SSSD users are:
# /etc/passwd does not list them (libnss-extrausers stands in for sssd).
NSS_USER=${NSS_USER:-phpc-nss} NSS_UID=7777 NSS_GROUP=phpc-nss-proj NSS_GROUP_GID=7778
for db in passwd group shadow; do
	grep -Eq "^$db:.*\bextrausers\b" /etc/nsswitch.conf || sed -i -E "s/^($db:.*)$/\1 extrausers/" /etc/nsswitch.conf
done
mkdir -p /var/lib/extrausers
for f in passwd group shadow; do touch "/var/lib/extrausers/$f"; done
chmod 0640 /var/lib/extrausers/shadow
if ! grep -q "^$NSS_USER:" /var/lib/extrausers/passwd; then
	echo "$NSS_USER:x:$NSS_UID:$NSS_UID:podman-hpc NSS-only test user:/home/$NSS_USER:/bin/bash" >>/var/lib/extrausers/passwd
	echo "$NSS_USER:x:$NSS_UID:" >>/var/lib/extrausers/group
	echo "$NSS_GROUP:x:$NSS_GROUP_GID:$NSS_USER" >>/var/lib/extrausers/group
	echo "$NSS_USER:*:19000:0:99999:7:::" >>/var/lib/extrausers/shadow
fi
if [ ! -d "/home/$NSS_USER" ]; then
	mkdir -p "/home/$NSS_USER"
	chown "$NSS_UID:$NSS_UID" "/home/$NSS_USER"
	chmod 0750 "/home/$NSS_USER"
fi
echo "deps.sh: all dependencies present"
