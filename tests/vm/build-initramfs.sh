#!/usr/bin/env bash
# Builds the tiny router VM used by the tests: a Debian kernel and an initramfs with busybox,
# qemu-ga, the virtio modules and the files the caller passes. See docs/qga-vm.md.
#
# usage: build-initramfs.sh OUTDIR [--bin FILE]... [--libs-of FILE]...
#   --bin FILE       copy FILE to /usr/bin/ in the guest, with its shared libraries
#   --libs-of FILE   only the shared libraries of FILE (for binaries pushed into the guest later)
#
# Writes OUTDIR/vm.env (KERNEL=, INITRD=, KERNEL_VERSION=, KERNEL_FORMAT=). The kernel is cached
# by package version under OUTDIR/kernel-*; the initramfs is rebuilt only when an input changed.
# Environment: VM_KERNEL_FORMAT=vmlinux|bzimage (default vmlinux, with a bzImage fallback),
# VM_INITRD_COMPRESS=none|gzip (default none).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    echo "build-initramfs: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: build-initramfs.sh OUTDIR [--bin FILE]... [--libs-of FILE]..."
out=$1
shift
bins=()
libs_of=()
while [ $# -gt 0 ]; do
    case $1 in
    --bin | --libs-of)
        [ $# -ge 2 ] || die "$1 needs a file"
        [ -f "$2" ] || die "$1 $2: no such file"
        if [ "$1" = --bin ]; then bins+=("$(realpath "$2")"); else libs_of+=("$(realpath "$2")"); fi
        shift 2
        ;;
    *) die "unknown argument: $1" ;;
    esac
done

kernel_format=${VM_KERNEL_FORMAT:-vmlinux}
compress=${VM_INITRD_COMPRESS:-none}
case $kernel_format in vmlinux | bzimage) ;; *) die "VM_KERNEL_FORMAT must be vmlinux or bzimage" ;; esac
case $compress in none | gzip) ;; *) die "VM_INITRD_COMPRESS must be none or gzip" ;; esac

# Host tools and the Debian packages that provide them.
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: install the Debian package $2"
}
need apt-get apt
need dpkg-deb dpkg
need cpio cpio
need xz xz-utils
need flock util-linux
[ -x /usr/sbin/qemu-ga ] || die "/usr/sbin/qemu-ga not found: install the Debian package qemu-guest-agent"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || die "busybox not found: install the Debian package busybox-static"
busybox=$(command -v busybox)
# A dynamically linked busybox would need its libraries; the static one needs nothing.
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked: install the Debian package busybox-static"
fi

mkdir -p "$out"
out=$(realpath "$out")
exec 9>"$out/.build.lock"
flock 9

# --- the kernel ---------------------------------------------------------------------------

# The metapackage depends on exactly one versioned kernel: "Depends: linux-image-X-amd64 (= V)".
depends=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | sed -n 's/^Depends: //p' | head -n 1)
pkg=$(sed -n 's/^\(linux-image-[0-9][^ ,]*\).*/\1/p' <<<"$depends")
version=$(sed -n 's/^linux-image-[0-9][^ ,]* (= \([^)]*\)).*/\1/p' <<<"$depends")
[ -n "$pkg" ] && [ -n "$version" ] ||
    die "cannot resolve the kernel package from linux-image-amd64 (Depends: '$depends'); run apt-get update first"
kdir="$out/kernel-${pkg}_${version}"

is_elf() {
    [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]
}

# Finds the compressed payload in a bzImage and decompresses it to an ELF vmlinux, the way the
# kernel's scripts/extract-vmlinux does: try each occurrence of a format's magic bytes.
extract_vmlinux() {
    local image=$1 dest=$2 magic tool offset
    for spec in '\xFD7zXZ\x00:xz -dcq' '\x28\xB5\x2F\xFD:zstd -dcq' '\x1F\x8B\x08:gzip -dcq'; do
        magic=${spec%%:*}
        tool=${spec#*:}
        command -v "${tool%% *}" >/dev/null 2>&1 || continue
        for offset in $(LC_ALL=C grep -aboP "$magic" "$image" | head -n 20 | cut -d: -f1); do
            # The payload is followed by other data, so the decompressor's complaint is expected.
            tail -c "+$((offset + 1))" "$image" | $tool >"$dest.tmp" 2>/dev/null || true
            if [ -s "$dest.tmp" ] && is_elf "$dest.tmp"; then
                mv "$dest.tmp" "$dest"
                return 0
            fi
        done
    done
    rm -f "$dest.tmp"
    return 1
}

# Modules /init loads, in this order; their dependencies are added before them.
wanted=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console virtio_net)

# Module lookup in the unpacked package (only while the kernel is being prepared).
module_file() {
    find "$kdir/pkg/lib/modules/$kver/kernel" \( -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" \) |
        head -n 1
}
decompress() {
    case $1 in
    *.xz) xz -dc "$1" ;;
    *.zst) zstd -dcq "$1" ;;
    *.gz) gzip -dc "$1" ;;
    *) cat "$1" ;;
    esac
}
order=()
add_module() {
    local name=${1//-/_} file dep m
    for m in "${order[@]}"; do [ "$m" = "$name" ] && return 0; done
    file=$(module_file "$name")
    if [ -z "$file" ]; then
        if grep -q "/$name.ko\$" "$kdir/pkg/lib/modules/$kver/modules.builtin" 2>/dev/null; then
            return 0
        fi
        die "module $name not found in $pkg"
    fi
    for dep in $(decompress "$file" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    order+=("$name")
}

if [ "$(cat "$kdir/.done" 2>/dev/null)" != "${wanted[*]}" ]; then
    echo "build-initramfs: fetching $pkg $version" >&2
    rm -rf "$kdir"
    mkdir -p "$kdir/download"
    (cd "$kdir/download" && apt-get download -q "$pkg=$version" >"$kdir/download.log" 2>&1) ||
        die "apt-get download $pkg=$version failed: $(tail -n 5 "$kdir/download.log")"
    deb=$(find "$kdir/download" -name '*.deb' | head -n 1)
    [ -n "$deb" ] || die "apt-get download $pkg left no .deb"
    mkdir -p "$kdir/pkg"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir/pkg" --wildcards './boot/*' './lib/modules/*' ||
        die "cannot unpack $deb"
    rm -rf "$kdir/download"
    kver=$(basename "$(find "$kdir/pkg/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)")
    [ -n "$kver" ] && [ -f "$kdir/pkg/boot/vmlinuz-$kver" ] || die "$deb has no boot/vmlinuz-$kver"
    # Keep the kernel, its config and the modules we load (decompressed), not the 400 MB tree.
    for m in "${wanted[@]}"; do add_module "$m"; done
    mkdir -p "$kdir/modules"
    for m in "${order[@]}"; do
        decompress "$(module_file "$m")" >"$kdir/modules/$m.ko"
    done
    printf '%s\n' "${order[@]}" >"$kdir/modules/order"
    mv "$kdir/pkg/boot/vmlinuz-$kver" "$kdir/vmlinuz"
    mv "$kdir/pkg/boot/config-$kver" "$kdir/config"
    rm -rf "$kdir/pkg"
    echo "$kver" >"$kdir/version"
    echo "${wanted[*]}" >"$kdir/.done"
    # Older kernels are no longer needed.
    find "$out" -mindepth 1 -maxdepth 1 -type d -name 'kernel-*' ! -path "$kdir" -exec rm -rf {} +
fi
kver=$(cat "$kdir/version")
mapfile -t order <"$kdir/modules/order"

# QEMU boots an ELF vmlinux directly through its PVH entry point (no decompression in the
# guest, which is slow under TCG); the kernel must have been built with CONFIG_PVH.
kernel="$kdir/vmlinuz"
format=bzimage
if [ "$kernel_format" = vmlinux ]; then
    if ! grep -qx 'CONFIG_PVH=y' "$kdir/config"; then
        echo "build-initramfs: $pkg lacks CONFIG_PVH, booting the compressed vmlinuz" >&2
    elif [ -f "$kdir/vmlinux" ] || extract_vmlinux "$kernel" "$kdir/vmlinux"; then
        kernel="$kdir/vmlinux"
        format=vmlinux
    else
        echo "build-initramfs: cannot extract vmlinux from vmlinuz-$kver, booting the compressed vmlinuz" >&2
    fi
fi

# --- the initramfs ------------------------------------------------------------------------

# Shared libraries of a binary, as ldd resolves them on this host.
libraries() {
    ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}
libs=()
for bin in /usr/sbin/qemu-ga "${bins[@]}" "${libs_of[@]}"; do
    if ! ldd "$bin" >/dev/null 2>&1; then
        continue # static
    fi
    while read -r lib; do libs+=("$lib"); done < <(libraries "$bin")
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sed '/^$/d' | sort -u)

initrd="$out/initramfs.cpio"
[ "$compress" = gzip ] && initrd="$initrd.gz"
inputs=(
    "${BASH_SOURCE[0]}" "$here/init" "$busybox" /usr/sbin/qemu-ga "${bins[@]}" "${libs[@]}"
    "$kdir/.done" "$kdir/modules/order"
)
stamp=$( (
    echo "$kver $format $compress ${order[*]}"
    printf '%s\n' "${bins[@]}"
    sha256sum "${inputs[@]}"
) | sha256sum | cut -d' ' -f1)

if [ ! -f "$initrd" ] || [ "$(cat "$out/.initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
    root="$out/root"
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,dev,proc,sys,tmp,run,var,root,config}
    mkdir -p "$root/lib/modules/$kver"
    ln -s ../run "$root/var/run"

    install -m 0755 "$busybox" "$root/bin/busybox"
    # Applet links; a file placed later (qemu-ga, the caller's binaries) wins.
    "$busybox" --list-full | while read -r applet; do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done

    install -m 0755 /usr/sbin/qemu-ga "$root/usr/sbin/qemu-ga"
    for bin in "${bins[@]}"; do
        rm -f "$root/usr/bin/$(basename "$bin")"
        install -m 0755 "$bin" "$root/usr/bin/$(basename "$bin")"
    done
    for lib in "${libs[@]}"; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done

    for m in "${order[@]}"; do
        cp "$kdir/modules/$m.ko" "$root/lib/modules/$kver/$m.ko"
    done
    cp "$kdir/modules/order" "$root/etc/modules"

    install -m 0755 "$here/init" "$root/init"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    printf 'NAME="vrouter test VM"\nID=vrouter-test-vm\nPRETTY_NAME="vrouter test VM"\n' >"$root/etc/os-release"

    # Every file belongs to root in the guest, whoever built the archive.
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out/initramfs.tmp"
    if [ "$compress" = gzip ]; then
        gzip -1 -n <"$out/initramfs.tmp" >"$initrd"
        rm -f "$out/initramfs.tmp"
    else
        mv "$out/initramfs.tmp" "$initrd"
    fi
    rm -rf "$root"
    echo "$stamp" >"$out/.initramfs.stamp"
    echo "build-initramfs: built $initrd ($(du -h "$initrd" | cut -f1))" >&2
fi

cat >"$out/vm.env.tmp" <<EOF
KERNEL=$kernel
INITRD=$initrd
KERNEL_VERSION=$kver
KERNEL_FORMAT=$format
KERNEL_PACKAGE=$pkg=$version
EOF
mv "$out/vm.env.tmp" "$out/vm.env"
cat "$out/vm.env"
