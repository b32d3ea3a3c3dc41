#!/usr/bin/env python3
# Assembles dist/ from wasm-bindgen's output and static/ (called by scripts/build-web.sh):
# content-named files (`browser-peer-<hash>.js`, `browser-peer-<hash>_bg.wasm`,
# `style-<hash>.css`: 16 hex digits of their SHA-256, the shape tracker/src/web.rs caches for
# ever), sw.js as it is (a service worker keeps its name), and index.html from
# static/index.html with its `data-trunk` links replaced by what they stand for: the
# stylesheet (with its SRI hash) and the module loader trunk writes, so `trunk serve` and this
# build give the same page.
import base64, hashlib, pathlib, re, shutil, sys

bindgen, static, out = (pathlib.Path(p) for p in sys.argv[1:4])
out.mkdir(parents=True)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


wasm = (bindgen / "browser-peer_bg.wasm").read_bytes()
js = (bindgen / "browser-peer.js").read_bytes()
h = digest(wasm + js)
js_name, wasm_name = f"browser-peer-{h}.js", f"browser-peer-{h}_bg.wasm"
(out / js_name).write_bytes(js)
(out / wasm_name).write_bytes(wasm)

page = (static / "index.html").read_text()
links = re.findall(r"<link data-trunk [^>]*>", page)
for link in links:
    rel = re.search(r'rel="([^"]+)"', link).group(1)
    href = re.search(r'href="([^"]+)"', link).group(1)
    if rel == "css":
        css = (static / href).read_bytes()
        name = f"{pathlib.Path(href).stem}-{digest(css)}.css"
        (out / name).write_bytes(css)
        sri = base64.b64encode(hashlib.sha384(css).digest()).decode()
        page = page.replace(link, f'<link rel="stylesheet" href="/{name}" integrity="sha384-{sri}"/>')
    elif rel == "copy-file":
        shutil.copyfile(static / href, out / pathlib.Path(href).name)
        page = page.replace(link, "")
    elif rel == "rust":
        loader = (
            "<script type=\"module\">\n"
            f"import init, * as bindings from '/{js_name}';\n"
            f"const wasm = await init({{ module_or_path: '/{wasm_name}' }});\n"
            "window.wasmBindings = bindings;\n"
            "dispatchEvent(new CustomEvent(\"TrunkApplicationStarted\", {detail: {wasm}}));\n"
            "</script>\n"
            f'<link rel="modulepreload" href="/{js_name}" crossorigin="anonymous">'
            f'<link rel="preload" href="/{wasm_name}" crossorigin="anonymous" as="fetch" type="application/wasm">'
        )
        page = page.replace(link, loader)
    else:
        sys.exit(f"web-dist: static/index.html has a data-trunk link this build does not know: {link}")
if "data-trunk" in page:
    sys.exit("web-dist: a data-trunk link is left in index.html")
(out / "index.html").write_text(page)
