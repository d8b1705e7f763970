#!/usr/bin/env bash
# Fetch the JavaScript the rendered book needs into _vendor/static/ (ignored by git, never committed),
# so that pages typeset maths and draw widgets with no network:
#   mathjax@3                         -> _vendor/static/mathjax/tex-chtml.js (+ its components and fonts)
#   requirejs@2                       -> _vendor/static/require.js
#   @jupyter-widgets/html-manager     -> _vendor/static/html-manager/embed-amd.js (+ its fonts)
# _config.yml points Sphinx at them (html_static_path, mathjax_path, nb_ipywidgets_js).
# Packages come from the npm registry as tarballs (`npm pack`, checked against the registry's
# integrity hash); nothing is installed globally and no node_modules tree is made.
# Usage: scripts/vendor_assets.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

MATHJAX=mathjax@3.2.2
REQUIREJS=requirejs@2.3.8
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.6   # the version myst-nb's default nb_ipywidgets_js uses

dest=_vendor/static
stamp=$dest/.versions
want="$MATHJAX $REQUIREJS $HTML_MANAGER"
if [[ "${1:-}" != "--force" && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    echo "vendored assets up to date ($want)"
    exit 0
fi
command -v npm >/dev/null || {
    echo "error: npm not found. Install Node.js/npm (e.g. apt-get install -y npm) to fetch MathJax and the widget manager." >&2
    exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching $want from $(npm config get registry 2>/dev/null)"
(cd "$work" && npm pack --silent --no-fund --no-audit "$MATHJAX" "$REQUIREJS" "$HTML_MANAGER" >/dev/null)
for tgz in "$work"/*.tgz; do
    mkdir -p "${tgz%.tgz}"
    tar xzf "$tgz" -C "${tgz%.tgz}"
done

new=$dest.new
rm -rf "$new"
mkdir -p "$new/mathjax" "$new/html-manager"
# MathJax: the tex-chtml entry point and the components it loads on demand (not the other combined builds).
mj=$(echo "$work"/mathjax-*/package/es5)
cp "$mj/tex-chtml.js" "$new/mathjax/"
cp -r "$mj/input" "$mj/output" "$mj/ui" "$mj/a11y" "$mj/adaptors" "$mj/sre" "$new/mathjax/"
cp "$work"/mathjax-*/package/LICENSE "$new/mathjax/LICENSE"
# require.js: the AMD loader that embed-amd.js registers itself with.
cp "$work"/requirejs-*/package/require.js "$new/require.js"
# The widget manager: embed-amd.js bundles the base, controls and output widgets and the fonts it references.
hm=$(echo "$work"/jupyter-widgets-html-manager-*/package)
find "$hm/dist" -maxdepth 1 -type f \( -name 'embed-amd.js' -o -name '*.woff2' -o -name '*.woff' \
    -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' -o -name '*.LICENSE.txt' \) -exec cp {} "$new/html-manager/" \;
cp "$hm/LICENSE" "$new/html-manager/LICENSE"
echo "$want" > "$new/.versions"

rm -rf "$dest"
mv "$new" "$dest"
echo "vendored into $dest ($(du -sh "$dest" | cut -f1))"
