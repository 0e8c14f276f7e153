#!/bin/sh
# Prepares the build context of layerbridge's container image (the Dockerfile
# at the repository root): `make image` runs it, and so does the integration
# test that builds the image (integration/sidecar_test.go), so both build the
# same thing.
#
#   deploy/image/context.sh DIR BINARY [CA_BUNDLE]
#
# DIR must not exist; it gets the Dockerfile, BINARY as layerbridge (it must
# be static: make build), CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt) as ca-certificates.crt, passwd and group
# from this directory, and cache/, the image's empty cache directory. Nothing
# is downloaded.
set -eu
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 DIR BINARY [CA_BUNDLE]" >&2
	exit 2
fi
dir=$1
bin=$2
ca=${3:-/etc/ssl/certs/ca-certificates.crt}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for f in "$bin" "$ca"; do
	if [ ! -f "$f" ]; then
		echo "$0: $f: no such file" >&2
		exit 1
	fi
done
mkdir "$dir"
mkdir "$dir/cache"
cp "$root/Dockerfile" "$dir/Dockerfile"
cp "$bin" "$dir/layerbridge"
chmod 0755 "$dir/layerbridge"
cp "$ca" "$dir/ca-certificates.crt"
chmod 0644 "$dir/ca-certificates.crt"
cp "$here/passwd" "$here/group" "$dir/"
