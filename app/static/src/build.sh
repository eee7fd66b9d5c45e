#!/usr/bin/env bash
# Rebuild Verity's vendored front-end assets in ../vendor/ from pinned npm
# packages. Run from anywhere:  bash app/static/src/build.sh
#
# Inputs (all in this folder): package.json (exact pins), package-lock.json
# (integrity hashes for the whole tree, installed with `npm ci`),
# verity-nhsuk.scss (our configuration of NHS.UK frontend's Sass).
#
# package-lock.json records no download addresses ("resolved" fields). After
# changing a version in package.json, regenerate it the same way:
#   npm install --package-lock-only --omit-lockfile-registry-resolved
# and check that `grep -c '"resolved"' package-lock.json` prints 0.
#
# Outputs (committed; this script rewrites them from scratch each run, so it
# is idempotent and leaves no stale files behind):
#   ../vendor/nhsuk-frontend/nhsuk-frontend.min.css   compiled from Sass
#   ../vendor/nhsuk-frontend/nhsuk-frontend.min.js    ES module (exports initAll)
#   ../vendor/nhsuk-frontend/assets/images/*.svg      only icons the CSS uses
#   ../vendor/nhsuk-frontend/LICENSE
#   ../vendor/htmx/htmx.min.js
#   ../vendor/htmx/LICENSE
#   ../vendor/socket.io-client/socket.io.esm.min.js  ES module (exports io)
#   ../vendor/socket.io-client/LICENSE
#   ../vendor/VERSIONS.txt
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

VENDOR_DIR="../vendor"
# URL path under which the Flask app serves ../vendor (must match the
# $nhsuk-assets-path set in verity-nhsuk.scss).
ASSETS_URL="/static/vendor/nhsuk-frontend/assets/images/"

die() { echo "build.sh: error: $*" >&2; exit 1; }

command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"

# 1. Install exactly the pinned packages. Install scripts are not needed by
#    any of them (sass is pure JS; its optional file watcher ships prebuilt
#    binaries), so they are not run.
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --ignore-scripts
else
  npm install --no-audit --no-fund --ignore-scripts
fi

pkg_field() { # pkg_field PACKAGE FIELD -> prints node_modules/PACKAGE/package.json FIELD
  node -e 'const p = require(process.argv[1]); process.stdout.write(String(p[process.argv[2]]))' \
    "./node_modules/$1/package.json" "$2"
}
pinned() { # pinned PACKAGE -> the exact version in our package.json
  node -e 'process.stdout.write(require("./package.json").devDependencies[process.argv[1]])' "$1"
}

for pkg in nhsuk-frontend htmx.org sass socket.io-client; do
  have="$(pkg_field "$pkg" version)"
  want="$(pinned "$pkg")"
  [[ "$have" == "$want" ]] || die "$pkg: installed $have but package.json pins $want"
done

NHSUK_VERSION="$(pkg_field nhsuk-frontend version)"
NHSUK_LICENSE="$(pkg_field nhsuk-frontend license)"
HTMX_VERSION="$(pkg_field htmx.org version)"
HTMX_LICENSE="$(pkg_field htmx.org license)"
NHSUK_DIST="node_modules/nhsuk-frontend/dist/nhsuk"
HTMX_DIST="node_modules/htmx.org/dist"
SIO_VERSION="$(pkg_field socket.io-client version)"
SIO_LICENSE="$(pkg_field socket.io-client license)"
SIO_DIST="node_modules/socket.io-client/dist"

# 2. Build everything in a scratch folder first; only replace the committed
#    output once every step and check has passed.
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/nhsuk-frontend/assets/images" "$STAGE/htmx" "$STAGE/socket.io-client"

strip_source_map() { # strip_source_map SRC DEST
  sed -e '/^\/\/# sourceMappingURL=/d' -e '/^\/\*# sourceMappingURL=.*\*\/$/d' "$1" > "$2"
}

# 2a. NHS.UK frontend CSS, from Sass source with our settings.
CSS="$STAGE/nhsuk-frontend/nhsuk-frontend.min.css"
./node_modules/.bin/sass \
  --load-path=node_modules \
  --style=compressed \
  --no-source-map \
  verity-nhsuk.scss "$CSS"

if grep -q 'http' "$CSS"; then
  grep -o '.\{0,40\}http.\{0,60\}' "$CSS" >&2 || true
  die "compiled CSS contains an absolute URL"
fi
! grep -qi 'frutiger' "$CSS" || die "compiled CSS still references the NHS Frutiger font"
! grep -q '@font-face' "$CSS" || die "compiled CSS contains @font-face"
! grep -q 'sourceMappingURL' "$CSS" || die "compiled CSS references a source map"

# 2b. Only the icon images the CSS refers to (no NHS logo, favicons,
#     touch icons, manifest or Open Graph image).
mapfile -t urls < <(grep -o 'url([^)]*)' "$CSS" | sed -e 's/^url(//' -e 's/)$//' -e 's/^["'\'']//' -e 's/["'\'']$//' | sort -u)
for url in "${urls[@]}"; do
  [[ "$url" == data:* ]] && continue
  [[ "$url" == "$ASSETS_URL"* ]] || die "unexpected url() in CSS: $url"
  name="${url#"$ASSETS_URL"}"
  [[ "$name" =~ ^[A-Za-z0-9._-]+\.svg$ ]] || die "unexpected asset name in CSS: $name"
  [[ -f "$NHSUK_DIST/assets/images/$name" ]] || die "CSS refers to $name, which the package does not ship"
  cp "$NHSUK_DIST/assets/images/$name" "$STAGE/nhsuk-frontend/assets/images/$name"
done
(( ${#urls[@]} > 0 )) || die "found no url() in compiled CSS (unexpected for this version)"

# 2c. NHS.UK frontend JS: the package's minified ES module bundle.
JS_SRC="$NHSUK_DIST/nhsuk-frontend-$NHSUK_VERSION.min.js"
[[ -f "$JS_SRC" ]] || die "missing $JS_SRC"
strip_source_map "$JS_SRC" "$STAGE/nhsuk-frontend/nhsuk-frontend.min.js"
grep -q 'export{[^}]*\binitAll\b' "$STAGE/nhsuk-frontend/nhsuk-frontend.min.js" \
  || die "nhsuk-frontend JS does not export initAll"

# 2d. Licence for NHS.UK frontend. The npm package ships no LICENSE file;
#     its package.json says MIT. Text as in the upstream repository.
[[ "$NHSUK_LICENSE" == "MIT" ]] || die "nhsuk-frontend licence changed to $NHSUK_LICENSE"
cat > "$STAGE/nhsuk-frontend/LICENSE" <<EOF
nhsuk-frontend $NHSUK_VERSION (NHS.UK frontend, maintained by NHS England), MIT License

MIT License

Copyright (c) 2019 NHS.UK

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
EOF

# 2e. htmx (classic script: defines window.htmx).
strip_source_map "$HTMX_DIST/htmx.min.js" "$STAGE/htmx/htmx.min.js"
cp node_modules/htmx.org/LICENSE "$STAGE/htmx/LICENSE"

# 2f. socket.io-client (the consultation's signaling client): the package's
#     minified ES module bundle, which exports `io` and has no dependencies.
SIO_SRC="$SIO_DIST/socket.io.esm.min.js"
[[ -f "$SIO_SRC" ]] || die "missing $SIO_SRC"
strip_source_map "$SIO_SRC" "$STAGE/socket.io-client/socket.io.esm.min.js"
grep -q 'export{[^}]*\bio\b' "$STAGE/socket.io-client/socket.io.esm.min.js" \
  || die "socket.io-client ESM bundle does not export io"
cp node_modules/socket.io-client/LICENSE "$STAGE/socket.io-client/LICENSE"

# 2g. Inventory.
{
  echo "htmx.org $HTMX_VERSION $HTMX_LICENSE"
  echo "nhsuk-frontend $NHSUK_VERSION $NHSUK_LICENSE"
  echo "socket.io-client $SIO_VERSION $SIO_LICENSE"
} > "$STAGE/VERSIONS.txt"

# 3. Swap the new output in (only the paths this script owns).
mkdir -p "$VENDOR_DIR"
rm -rf "$VENDOR_DIR/nhsuk-frontend" "$VENDOR_DIR/htmx" "$VENDOR_DIR/socket.io-client"
cp -R "$STAGE/nhsuk-frontend" "$STAGE/htmx" "$STAGE/socket.io-client" "$STAGE/VERSIONS.txt" "$VENDOR_DIR/"
chmod -R u=rwX,go=rX "$VENDOR_DIR/nhsuk-frontend" "$VENDOR_DIR/htmx" "$VENDOR_DIR/socket.io-client" "$VENDOR_DIR/VERSIONS.txt"

echo "build.sh: vendored nhsuk-frontend $NHSUK_VERSION, htmx.org $HTMX_VERSION and socket.io-client $SIO_VERSION into app/static/vendor/"
