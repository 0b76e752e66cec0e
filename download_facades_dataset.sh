#!/usr/bin/env bash
# Fetch a pix2pix dataset into datasets/NAME/ with train/val(/test) image lists.
#
#   bash download_facades_dataset.sh [NAME] [--from PATH]
#
# --from takes a local NAME.tar.gz or an unpacked folder, for offline machines.
# DATASETS_DIR overrides the parent folder "datasets" (used by the tests).
set -euo pipefail
# Fixed locale: tar's listing columns and sort order must not depend on the user's.
export LC_ALL=C

NAMES=(facades cityscapes maps edges2shoes edges2handbags night2day)
URL_BASE=http://efrosgans.eecs.berkeley.edu/pix2pix/datasets

usage() {
    echo "usage: bash $0 [NAME] [--from PATH]" >&2
    echo "  NAME: ${NAMES[*]} (default: facades)" >&2
    echo "  --from PATH: use a local NAME.tar.gz or unpacked folder instead of downloading" >&2
    exit 2
}
die() { echo "error: $*" >&2; exit 1; }

# Run a tool with its stderr kept out of sight; if it fails, report one line:
# our message plus the tool's last complaint, which is usually the useful part.
try() {
    local msg=$1 why
    shift
    "$@" 2>"$log" && return
    why=$(awk 'NF { last = $0 } END { print substr(last, 1, 200) }' "$log")
    die "$msg${why:+ ($why)}"
}

name="" src=""
while [ $# -gt 0 ]; do
    case $1 in
        --from) [ $# -ge 2 ] || usage; src=$2; shift 2 ;;
        --from=*) src=${1#--from=}; shift ;;
        -*) usage ;;
        *) [ -z "$name" ] || usage; name=$1; shift ;;
    esac
done
name=${name:-facades}
# Exact match against the list: NAME becomes part of paths and a URL.
known() { local n; for n in "${NAMES[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
known "$name" || usage

root=${DATASETS_DIR:-datasets}
dest=$root/$name
# List entries are written relative to the repo root, as the data loader expects.
case $root in
    /*) prefix=$root/$name ;;
    *) prefix=./${root#./}/$name ;;
esac

# Both list files are written last, so together they mean "finished".
if [ -f "$dest/train_list.txt" ] && [ -f "$dest/val_list.txt" ]; then
    echo "$name is already there in $dest (delete it to fetch again)"
    exit 0
fi
if [ -e "$dest" ]; then
    echo "$dest exists but is incomplete; redoing it"
fi
if [ -n "$src" ] && [ ! -e "$src" ]; then
    die "no such file or folder: $src"
fi

# Everything temporary lives next to the destination (same filesystem, so the final
# mv is an atomic rename, and multi-GB archives don't fill a small /tmp), under
# hidden names that can't be mistaken for a finished dataset. The trap removes it
# all on any exit, including Ctrl-C.
log=$(mktemp) staging="" download="" made_root=0
cleanup() {
    rm -rf "$log" ${staging:+"$staging"} ${download:+"$download"}
    if [ "$made_root" = 1 ]; then rmdir "$root" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ ! -d "$root" ]; then try "cannot create $root" mkdir -p "$root"; made_root=1; fi
staging=$(try "cannot write in $root" mktemp -d "$root/.$name.partial.XXXXXX")
# mktemp makes it private (0700); it may become the dataset folder itself.
chmod "$(umask -S)" "$staging"

# Where train/ and val/ are: the pix2pix archives wrap them in a NAME/ folder,
# hand-made ones may not.
data_dir() {
    local d
    for d in "$1" "$1/$name"; do
        if [ -d "$d/train" ] && [ -d "$d/val" ]; then echo "$d"; return; fi
    done
    return 1
}

if [ -d "$src" ]; then
    from=$(data_dir "$src") || die "$src has no train/ and val/ folders (nor $name/train, $name/val)"
    # Copy only the splits, never the user's copy itself: it stays usable.
    for split in train val test; do
        if [ -d "$from/$split" ]; then try "cannot copy $from/$split" cp -R "$from/$split" "$staging/"; fi
    done
    data=$staging
else
    archive=$src origin=$src
    if [ -z "$archive" ]; then
        url=$URL_BASE/$name.tar.gz origin="the download from $url"
        download=$(try "cannot write in $root" mktemp "$root/.$name.download.XXXXXX")
        archive=$download
        echo "downloading $url ..."
        if command -v curl >/dev/null && [ -t 2 ]; then
            # on a terminal, a progress bar: cityscapes and edges2shoes take minutes
            curl -fL --retry 2 --progress-bar -o "$download" "$url" || die "download failed: $url"
        elif command -v curl >/dev/null; then
            try "download failed: $url" curl -fsSL --retry 2 -o "$download" "$url"
        elif command -v wget >/dev/null; then
            try "download failed: $url" wget -nv -O "$download" "$url"
        else
            die "neither curl nor wget found; install one, or download $url yourself and use --from"
        fi
    fi
    # A truncated download would otherwise fail halfway through extraction.
    try "$origin is not a valid .tar.gz" gzip -t "$archive"
    listing=$staging/.listing
    try "cannot read $origin" tar -tzvf "$archive" >"$listing"
    # Refuse the whole archive rather than trust tar's own guards, which vary by
    # version and options: only plain files and folders, and no name that could
    # land outside the staging folder.
    bad=$(awk '
        { name = $0; for (i = 0; i < 5; i++) sub(/^[^ ]+ +/, "", name) }  # mode owner size date time
        $1 !~ /^[-d]/ { print "link or special file: " name; exit }
        name ~ /^\// || name ~ /(^|\/)\.\.(\/|$)/ { print "unsafe path: " name; exit }
    ' "$listing")
    [ -z "$bad" ] || die "refusing $origin: $bad"
    rm -f "$listing"
    try "cannot unpack $origin" tar -xzf "$archive" -C "$staging" --no-same-owner
    data=$(data_dir "$staging") || die "$origin has no train/ and val/ folders (nor $name/train, $name/val)"
fi

# One path per line, in numeric order of the file stem (1, 2, 10), so runs and
# machines agree on the order; non-numeric names follow, alphabetically.
# Prints how many images it listed.
write_list() {
    find "$data/$1" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) -printf '%f\n' |
        awk '{ stem = $0; sub(/\.[^.]*$/, "", stem)
               if (stem ~ /^[0-9]+$/) print 0 "\t" stem "\t" $0; else print 1 "\t0\t" $0 }' |
        sort -t "$(printf '\t')" -k1,1n -k2,2n -k3 | cut -f3- |
        awk -v p="$prefix/$1/" '{ print p $0 }' >"$data/${1}_list.txt"
    wc -l <"$data/${1}_list.txt"
}
n_train=$(write_list train)
[ "$n_train" -gt 0 ] || die "no .jpg/.png images in train/ of ${src:-$url}"
n_val=$(write_list val)
[ "$n_val" -gt 0 ] || die "no .jpg/.png images in val/ of ${src:-$url}"
summary="$n_train train, $n_val val"
if [ -d "$data/test" ]; then
    # test/ is optional, so an image-less one is dropped rather than fatal.
    n_test=$(write_list test)
    if [ "$n_test" -gt 0 ]; then summary+=", $n_test test"; else rm "$data/test_list.txt"; fi
fi

# Only a fully checked folder takes the final name; an incomplete old one goes first.
rm -rf "$dest"
try "cannot move the dataset into $dest" mv -T "$data" "$dest"
echo "$name ready: $summary images in $dest"
echo "next: python train.py"
