#!/bin/sh
# Debian's PostGIS for PostgreSQL 15 and the GDAL/GEOS libraries GeoDjango
# loads, for the composed-engine tests (integrations/composed). Idempotent:
# does nothing when they are installed. Never fails the build: where they
# cannot be installed (not root, no apt-get), it says what is missing and the
# PostGIS tests skip themselves, naming it again -- except under CI (CI set),
# where a skipped module would pass off as coverage: there it fails.
PACKAGES="postgresql-15-postgis-3 libgdal32 libgeos-c1v5"

missing=""
for package in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $package"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_postgis: missing Debian packages:$missing; the PostGIS tests will be" \
         "skipped. As root: apt-get install$missing"
    [ -z "${CI:-}" ] || exit 1
    exit 0
fi
echo "install_postgis: installing$missing"
if ! { apt-get update -q >/dev/null \
       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          $missing >/dev/null; }; then
    echo "install_postgis: apt-get could not install$missing; the PostGIS tests will be skipped."
    [ -z "${CI:-}" ] || exit 1
fi
exit 0
