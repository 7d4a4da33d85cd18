"""`python -m dti_sprites visdom-server`: visdom's own server, started so that its page opens
offline and with current tornado.

visdom 0.2.4 as shipped cannot show its page here, for two reasons:

- `python -m visdom.server` first downloads the page's scripts (jQuery, Bootstrap, plotly.js,
  ...) from CDNs; offline it dies with a ConnectionError. The package ships only its own
  `main.js` (which bundles React) and style sheets.
- Its index.html asks tornado for the static URL of `../user/style.css`, outside the static
  folder. Since tornado 6.6 `static_url` refuses such a path with HTTP 403, so `/` and
  `/env/<name>` answer 403.

So this launcher serves the page from a folder assembled at start: visdom's static files, the
scripts it would download taken from installed Python packages (`PAGE_FILES`), and
placeholders for scripts only panes this project never sends need (`PLACEHOLDERS`). Its
static handler leaves a URL outside that folder unversioned instead of refusing it; the
browser then asks `/user/style.css`, which visdom serves.
"""

import importlib.util
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from tornado.ioloop import IOLoop
from tornado.web import HTTPError, StaticFileHandler

from ..errors import DTISpritesError

# visdom's page file -> (module whose folder holds it, path inside that folder, pip requirement).
PAGE_FILES = {
    "js/jquery.min.js": ("xstatic.pkg.jquery", "data/jquery.min.js", "XStatic-jQuery<4"),
    "js/bootstrap.min.js": ("xstatic.pkg.bootstrap", "data/js/bootstrap.min.js", "XStatic-Bootstrap<4"),
    "css/bootstrap.min.css": ("xstatic.pkg.bootstrap", "data/css/bootstrap.min.css", "XStatic-Bootstrap<4"),
    "fonts": ("xstatic.pkg.bootstrap", "data/fonts", "XStatic-Bootstrap<4"),
    "js/plotly-plotly.min.js": ("plotly", "package_data/plotly.min.js", "plotly<6"),
    "js/layout_bin_packer.js": (__package__, "visdom_page/layout_bin_packer.js", "dti-sprites"),
    "css/react-grid-layout-styles.css": (__package__, "visdom_page/grid_layout.css", "dti-sprites"),
    "css/react-resizable-styles.css": (__package__, "visdom_page/resizable.css", "dti-sprites"),
}

# Scripts index.html loads that this project's windows (line plots, images) do not use.
PLACEHOLDERS = {
    "js/react-react.min.js": "React is bundled in visdom's main.js",
    "js/react-dom.min.js": "ReactDOM is bundled in visdom's main.js",
    "js/mathjax/2.7.5/MathJax.js": "not served offline: LaTeX in text windows stays as typed",
    "js/mathjax/2.7.5/config/TeX-AMS-MML_HTMLorMML.js": "not served offline (MathJax)",
    "js/d3.v3.min.js": "not served offline: network-graph windows need d3 v3",
    "js/d3-selection-multi.v1.js": "not served offline: network-graph windows need it",
    "js/saveSvgAsPng.js": "not served offline: network-graph windows need it",
}


class PageStaticHandler(StaticFileHandler):
    """Serves the page folder; a URL that leaves it (visdom's `../user/style.css`) gets no
    version hash instead of tornado's 403, and the browser resolves it to `/user/style.css`."""

    @classmethod
    def get_version(cls, settings, path):
        try:
            return super().get_version(settings, path)
        except HTTPError:
            return None


def _package_dir(module: str, requirement: str) -> Path:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DTISpritesError(
            f"visdom-server: Python package {module} not found; it serves the visdom "
            f"page's scripts offline (install it: pip install '{requirement}')"
        )
    return Path(list(spec.submodule_search_locations)[0])


def assemble_page(dest: Path) -> Path:
    """Fill `dest` with everything the visdom page loads, from installed packages only."""
    dest = Path(dest)
    shutil.copytree(_package_dir("visdom", "visdom") / "static", dest, dirs_exist_ok=True)
    for target, (module, inner, requirement) in PAGE_FILES.items():
        source = _package_dir(module, requirement) / inner
        if not source.exists():
            raise DTISpritesError(
                f"visdom-server: {source} is missing from the installed package {module} "
                f"(reinstall it: pip install --force-reinstall '{requirement}')"
            )
        if source.is_dir():
            shutil.copytree(source, dest / target, dirs_exist_ok=True)
        else:
            (dest / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / target)
    for target, why in PLACEHOLDERS.items():
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        (dest / target).write_text(f"/* {why} */\n")
    return dest


def _raise_exit(signum, frame):
    sys.exit(0)  # unwinds serve(), which removes the page folder


def serve(port: int, host: str = "localhost", env_path: str | None = None) -> None:
    """Run visdom's server on host:port until interrupted, page assembled in a temporary folder.

    env_path: where visdom keeps its environments (default: its own, ~/.visdom/).
    """
    import visdom.server.app as visdom_app
    from visdom.server.defaults import DEFAULT_ENV_PATH

    env_path = str(Path(env_path).expanduser()) if env_path else DEFAULT_ENV_PATH
    page = Path(tempfile.mkdtemp(prefix="dti_sprites_visdom_page_"))
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        assemble_page(page)
        # visdom builds its tornado Application from this module-level dict. Its debug mode
        # would also restart the server whenever a Python file changes and re-hash every script
        # on each page load: neither is wanted for a monitoring server.
        visdom_app.tornado_settings.update(
            static_path=str(page),
            template_path=str(page),
            static_handler_class=PageStaticHandler,
            autoreload=False,
            static_hash_cache=True,
        )
        try:
            app = visdom_app.Application(port=port, env_path=env_path)
        except OSError as err:
            raise DTISpritesError(f"visdom-server: environment folder {env_path} cannot be used ({err})") from err
        try:
            app.listen(port, address=host, max_buffer_size=1024**3)  # visdom's limit: large image grids
        except OSError as err:
            raise DTISpritesError(
                f"visdom-server: cannot listen on {host}:{port} ({err.strerror}); choose another --port or --host"
            ) from err
        shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
        print(f"visdom page: http://{shown}:{port} (environments in {env_path}); Ctrl-C stops it", flush=True)
        IOLoop.current().start()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(page, ignore_errors=True)
