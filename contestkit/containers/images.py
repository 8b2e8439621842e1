"""The toolkit's Docker images: definitions, builds, staleness, and first-use builds.

Images (Dockerfiles in ``contestkit/dockerfiles``, shipped as package data):

* ``contestkit/remote-env:<version>``: stable-retro, gymnasium and this contestkit; entrypoint
  ``python -m contestkit.runs.envprogram``. The eval runtime runs it next to the agent.
* ``contestkit/agent:cpu``: the agent base: numpy, gymnasium and contestkit's bridge client
  (``import gym_remote.client`` works), WORKDIR ``/root/compo``, bridge volume mount point
  ``/root/compo/tmp``, output dir ``/root/compo/out``, CMD ``python -u /root/compo/agent.py``.
* ``contestkit/agent:pytorch`` / ``contestkit/agent:tensorflow``: ``agent:cpu`` plus a CPU-only
  framework. Not built by default (they are large and slow); ``contestkit images build pytorch``.

Why builds are keyed by a content hash: the images embed this package's code, so an image built
from older code is wrong even though its tag exists. Every build gets a label holding the sha256
of everything that went into it (Dockerfile, context files, build args, the parent image's id);
:func:`ensure_image` rebuilds when the label differs, and otherwise returns in milliseconds.
Layers are ordered so that a code change rebuilds only the last layer.

The build context is assembled here (see ``dockerfiles/README.md``): the CA bundle pip and apt
must trust (for TLS-re-signing proxies), a requirements file taken from the package metadata, and
a wheel of this very package made from its installed source, so the images always carry the same
code as the CLI that built them, whether it runs from a checkout or from site-packages.

The library never prints: progress goes to an ``on_event`` callback as :class:`BuildEvent`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import io
import os
import re
import tarfile
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contestkit import __version__
from contestkit.containers import imageref
from contestkit.errors import ContestkitError, NotFoundError
from contestkit.projects.config import Config, load_config

if TYPE_CHECKING:
    from docker import APIClient

LABEL_VERSION = "org.contestkit.version"
LABEL_IMAGE = "org.contestkit.image"
LABEL_HASH = "org.contestkit.context-hash"
LABEL_PARENT = "org.contestkit.parent-image"

#: What ``contestkit images bootstrap`` produces: the stand-in for the official slim Python image.
BOOTSTRAP_IMAGE = "contestkit/python:bookworm"

DEFAULT_TORCH_PIP_ARGS = "--index-url https://download.pytorch.org/whl/cpu torch"


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class BuildEvent:
    """One thing worth showing while images build.

    ``kind`` is one of: ``info`` (a decision: "building X, first use"), ``step`` (a Dockerfile
    step starts; ``step``/``total`` set), ``cached`` (that step came from cache), ``output`` (a
    line the step printed), ``pull`` (image pull progress), ``done`` (an image is ready;
    ``message`` is the tag), ``warning``.
    """

    kind: str
    image: str
    message: str
    step: int = 0
    total: int = 0


EventCallback = Callable[[BuildEvent], None]


def _noop(_: BuildEvent) -> None:
    pass


class BuildFailed(ContestkitError):
    """A Dockerfile step failed; the message names the step and ends with its output."""

    def __init__(self, image: str, step: int, total: int, instruction: str, error: str, output: list[str]):
        self.image, self.step, self.total = image, step, total
        self.instruction, self.error, self.output = instruction, error, output
        where = f"step {step}/{total} `{instruction}`" if step else "before the first step"
        tail = "\n".join(output[-30:])
        message = f"Building {image} failed at {where}: {error.strip()}"
        if tail:
            message += f"\n--- output of that step ---\n{tail}\n---"
        message += "\nFix that step (or what it installs) and build again."
        super().__init__(message)


_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NOISE = ("Removing intermediate container", "Successfully tagged")
# The classic builder paints a step's stderr red with ANSI codes; events carry plain text.
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def stream_build(api: APIClient, image: str, on_event: EventCallback | None = None, **kwargs: Any) -> str:
    """Run ``api.build(**kwargs)`` and turn its JSON stream into events; return the image id.

    ``image`` is only the name used in events and errors. Raises :class:`BuildFailed` (with the
    failing step and its last output lines) instead of letting the SDK's exceptions through.
    """
    from docker.errors import APIError

    emit = on_event or _noop
    step, total, instruction = 0, 0, ""
    output: deque[str] = deque(maxlen=200)
    image_id = ""
    pending = ""

    def handle_line(line: str) -> None:
        nonlocal step, total, instruction, image_id
        match = _STEP_RE.match(line)
        if match:
            step, total, instruction = int(match[1]), int(match[2]), match[3]
            output.clear()
            emit(BuildEvent("step", image, instruction, step, total))
        elif line.startswith(" ---> "):
            if "Using cache" in line:
                emit(BuildEvent("cached", image, instruction, step, total))
        elif line.startswith("Successfully built "):
            image_id = line.split()[-1]
        elif line.strip() and not line.startswith(_NOISE):
            output.append(line)
            emit(BuildEvent("output", image, line, step, total))

    try:
        for chunk in api.build(decode=True, **kwargs):
            if "stream" in chunk:
                text = _ANSI_RE.sub("", chunk["stream"])
                pending += text.replace("\r\n", "\n").replace("\r", "\n")
                *lines, pending = pending.split("\n")
                for line in lines:
                    handle_line(line)
            elif "aux" in chunk and isinstance(chunk["aux"], dict):
                image_id = chunk["aux"].get("ID", image_id)
            elif "error" in chunk:
                if pending:
                    handle_line(pending)
                detail = chunk.get("errorDetail") or {}
                raise BuildFailed(
                    image, step, total, instruction, detail.get("message") or chunk["error"], list(output)
                )
            elif "status" in chunk:
                emit(BuildEvent("pull", image, _pull_line(chunk), step, total))
    except APIError as exc:
        raise BuildFailed(image, step, total, instruction, _api_error_text(exc), list(output)) from exc
    if pending:
        handle_line(pending)
    if not image_id:
        raise BuildFailed(image, step, total, instruction, "the engine reported no image id", list(output))
    return image_id


def _pull_line(chunk: dict[str, Any]) -> str:
    parts = [chunk.get("id", ""), chunk.get("status", ""), chunk.get("progress", "")]
    return " ".join(p for p in parts if p)


def _api_error_text(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


# --------------------------------------------------------------------------------------------
# Definitions


@dataclass(frozen=True)
class ImageSpec:
    """One toolkit image.

    ``parent`` is the key of the image it is built on, or ``None`` for the Python image.
    ``requirements`` names the distributions of this package's dependencies that go in (``None``:
    all of them). ``wheel_prefix`` selects the local wheels (``wheels_dir``) offered to it.
    """

    key: str
    repository: str
    tag: str
    dockerfile: str
    description: str
    parent: str | None = None
    requirements: tuple[str, ...] | None = ()
    package: bool = True
    default: bool = True
    wheel_prefix: str | None = None
    pip_args: str = ""
    check: str = "pass"
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        """``repository:tag``, what ``docker run`` takes."""
        return f"{self.repository}:{self.tag}"


IMAGES: dict[str, ImageSpec] = {
    spec.key: spec
    for spec in (
        ImageSpec(
            "remote-env",
            "contestkit/remote-env",
            __version__,
            "remote-env.Dockerfile",
            "contest environment (stable-retro) and the env side of the bridge",
            requirements=None,
            aliases=("remote", "env", "retro-env"),
        ),
        ImageSpec(
            "cpu",
            "contestkit/agent",
            "cpu",
            "agent-cpu.Dockerfile",
            "agent base: numpy, gymnasium, bridge client (gym_remote)",
            requirements=("numpy", "gymnasium"),
            aliases=("agent", "agent-cpu"),
        ),
        ImageSpec(
            "pytorch",
            "contestkit/agent",
            "pytorch",
            "agent-framework.Dockerfile",
            "agent:cpu + PyTorch (CPU build)",
            parent="cpu",
            package=False,
            default=False,
            wheel_prefix="torch",
            pip_args=DEFAULT_TORCH_PIP_ARGS,
            check="import torch; assert torch.version.cuda is None, 'a CUDA build of torch got installed'",
            aliases=("torch", "agent-pytorch"),
        ),
        ImageSpec(
            "tensorflow",
            "contestkit/agent",
            "tensorflow",
            "agent-framework.Dockerfile",
            "agent:cpu + TensorFlow (tensorflow-cpu)",
            parent="cpu",
            package=False,
            default=False,
            wheel_prefix="tensorflow_cpu",
            pip_args="tensorflow-cpu",
            check="import tensorflow",
            aliases=("tf", "agent-tensorflow"),
        ),
    )
}


def image_spec(name: str) -> ImageSpec:
    """Find a toolkit image by key (``cpu``), alias (``tf``) or reference (``contestkit/agent:cpu``)."""
    wanted = name.strip().lower()
    short = wanted.removeprefix("contestkit/")
    for spec in IMAGES.values():
        names = {spec.key, spec.ref, spec.ref.removeprefix("contestkit/"), *spec.aliases}
        if wanted in names or short in names:
            return spec
    if short in ("remote-env", "remote-env:latest"):
        return IMAGES["remote-env"]
    raise NotFoundError(
        f"No toolkit image called '{name}': choose from {', '.join(IMAGES)} (see `contestkit images list`)."
    )


def is_toolkit_image(ref: str) -> bool:
    """Whether ``ref`` names one of the images :func:`ensure_image` can build."""
    try:
        image_spec(ref)
    except NotFoundError:
        return False
    return True


def default_images() -> list[ImageSpec]:
    """What ``contestkit images build`` builds without names: what eval needs."""
    return [spec for spec in IMAGES.values() if spec.default]


# --------------------------------------------------------------------------------------------
# Build context


@dataclass
class BuildContext:
    """Files of one build context (in memory, or on disk for big wheels), and its hash."""

    files: dict[str, bytes | Path]
    dockerfile: str
    buildargs: dict[str, str]
    digest: str = ""

    def compute_digest(self, parent_id: str) -> str:
        """sha256 over everything that decides the image's content (big files by name+size+mtime)."""
        h = hashlib.sha256()
        h.update(f"contestkit {__version__}\nparent {parent_id}\n".encode())
        for name, value in sorted(self.buildargs.items()):
            h.update(f"arg {name}={value}\n".encode())
        for name in sorted(self.files):
            value = self.files[name]
            if isinstance(value, Path):
                st = value.stat()
                h.update(f"file {name} {st.st_size} {st.st_mtime_ns}\n".encode())
            else:
                h.update(f"file {name} {len(value)}\n".encode())
                h.update(value)
        self.digest = h.hexdigest()
        return self.digest

    def write_tar(self, fileobj: Any) -> None:
        """Write the context as an uncompressed tar (deterministic: fixed mtimes and owners)."""
        with tarfile.open(fileobj=fileobj, mode="w") as tar:
            dirs: set[str] = set()
            for name in sorted(self.files):
                parts = name.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        info = tarfile.TarInfo(d)
                        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                        tar.addfile(info)
                value = self.files[name]
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = 0o644, 0
                if isinstance(value, Path):
                    info.size = value.stat().st_size
                    with value.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    info.size = len(value)
                    tar.addfile(info, io.BytesIO(value))
        fileobj.seek(0)


def dockerfile_text(name: str) -> str:
    """The text of a packaged Dockerfile."""
    return resources.files("contestkit").joinpath("dockerfiles", name).read_text(encoding="utf-8")


def ca_bundle_bytes(config: Config) -> bytes:
    """The CA bundle pip/apt trust inside builds: the default CAs plus the configured extra bundle.

    Always a complete bundle (never only the extra certificate), so pointing ``PIP_CERT`` at it
    never breaks hosts the proxy does not re-sign. The defaults come from ``certifi`` (a
    dependency of ``requests``, hence of the Docker SDK), the same list pip ships.
    """
    import certifi

    parts = [Path(certifi.where()).read_bytes()]
    extra = config.ca_bundle
    if extra is not None:
        extra = Path(extra)
        source = config.sources.get("ca_bundle", "config")
        if not extra.is_file():
            raise ContestkitError(
                f"The CA bundle {extra} (from {source}) does not exist: fix ca_bundle or that variable."
            )
        data = extra.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise ContestkitError(f"The CA bundle {extra} (from {source}) holds no PEM certificate: give a PEM file.")
        if extra.resolve() != Path(certifi.where()).resolve():
            parts.append(b"\n# extra CA bundle configured for contestkit builds\n" + data)
    return b"\n".join(parts)


def _ca_files(config: Config) -> dict[str, bytes]:
    return {
        "ca/etc/contestkit/ca-bundle.crt": ca_bundle_bytes(config),
        "ca/etc/apt/apt.conf.d/99contestkit-ca": b'Acquire::https::CAInfo "/etc/contestkit/ca-bundle.crt";\n',
    }


def _package_dirs() -> list[Path]:
    """Source directories of the top-level packages that make up contestkit."""
    import contestkit

    root = Path(contestkit.__file__).resolve().parent
    dirs = [root]
    sibling = root.parent / "gym_remote"
    if sibling.is_dir():
        dirs.append(sibling)
    return dirs


def _requirements() -> list[str]:
    """This package's runtime requirements (no extras), from the source checkout or metadata.

    A checkout's pyproject.toml wins over installed metadata, because an editable install's
    metadata goes stale when the dependency list changes.
    """
    pyproject = _package_dirs()[0].parent / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            tomllib = None  # type: ignore[assignment]
        if tomllib is not None:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            if data.get("project", {}).get("name") == "contestkit":
                return list(data["project"].get("dependencies", []))
    try:
        reqs = importlib.metadata.requires("contestkit") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ContestkitError(
            "Cannot find contestkit's dependency list (no pyproject.toml beside the package and no "
            "installed metadata): install contestkit with pip."
        ) from exc
    return [r for r in reqs if "extra ==" not in r]


def _requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _wheel_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def package_files(package_dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """(path inside the wheel, file) for every source file of the packages, in a fixed order.

    Symbolic links are followed, so what goes in depends on the content only, not on how it was
    installed: a checkout (an editable install) reaches ``contestkit/templates`` through a link
    to the repository's ``templates/``, a regular install holds the same files as a directory,
    and both must give the same wheel and so the same image hash. A link that leads back into a
    directory already being walked is skipped (no endless loop).
    """
    found: list[tuple[str, Path]] = []
    for pkg_dir in package_dirs:
        base = Path(pkg_dir)
        for directory, subdirs, names in os.walk(base, followlinks=True):
            here = Path(directory)
            if os.path.realpath(here) in {os.path.realpath(parent) for parent in here.parents}:
                subdirs[:] = []  # a link back to a directory above: its files are already in
                continue
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            for name in names:
                path = here / name
                if path.suffix in (".pyc", ".pyo") or not path.is_file():
                    continue
                found.append(((Path(base.name) / path.relative_to(base)).as_posix(), path))
    return sorted(found)


def package_wheel(
    requirements: list[str] | None = None, *, package_dirs: Iterable[Path] | None = None
) -> tuple[str, bytes]:
    """A wheel of the running contestkit (and gym_remote), made from its source files.

    Why not ``pip wheel .``: that needs the build backend and network (build isolation), and an
    installed contestkit has no ``pyproject.toml`` to build from. A pure-Python wheel is only a
    zip with a ``.dist-info``; building it here is deterministic (fixed timestamps), so
    unchanged code gives a byte-identical wheel and Docker's layer cache holds.

    ``requirements`` replaces the declared dependencies: agent images install only the bridge's
    (numpy, gymnasium), and a wheel claiming the CLI's would make every later ``pip install``
    in a user's image print dependency-conflict errors. ``package_dirs`` defaults to the running
    contestkit's own (see :func:`package_files` for what is taken from them).
    """
    files = [(name, path.read_bytes()) for name, path in package_files(package_dirs or _package_dirs())]
    dist_info = f"contestkit-{__version__}.dist-info"
    reqs = _requirements() if requirements is None else requirements
    requires = "".join(f"Requires-Dist: {r}\n" for r in reqs)
    meta = (
        f"Metadata-Version: 2.1\nName: contestkit\nVersion: {__version__}\n"
        f"Summary: contestkit (built into a toolkit image)\nRequires-Python: >=3.10\n{requires}"
    ).encode()
    files.append((f"{dist_info}/METADATA", meta))
    files.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: contestkit.containers.images\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    files.append((f"{dist_info}/entry_points.txt", b"[console_scripts]\ncontestkit = contestkit.cli:main\n"))
    record = "".join(f"{name},{_wheel_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return f"contestkit-{__version__}-py3-none-any.whl", buffer.getvalue()


def _local_wheels(spec: ImageSpec, config: Config) -> tuple[dict[str, Path], str | None]:
    """Wheels from ``wheels_dir`` for a framework image, and the pip args pinning the best one."""
    wheels_dir = config.wheels_dir
    if not spec.wheel_prefix or wheels_dir is None or not Path(wheels_dir).is_dir():
        return {}, None
    candidates = sorted(p for p in Path(wheels_dir).glob(f"{spec.wheel_prefix}-*.whl") if p.is_file())
    if spec.key == "pytorch":
        candidates = [p for p in candidates if "+cpu" in p.name]
    if not candidates:
        return {}, None
    # prefer the CPython the default Python image runs (3.11), else the newest file name
    best = sorted(candidates, key=lambda p: ("-cp311-" in p.name, p.name))[-1]
    version = best.name.split("-")[1]
    dist = best.name.split("-")[0].replace("_", "-")
    return {f"wheels/{best.name}": best}, f"{dist}=={version}"


def build_context(spec: ImageSpec, config: Config, parent_ref: str) -> BuildContext:
    """Assemble the build context of ``spec`` on top of ``parent_ref``."""
    files: dict[str, bytes | Path] = {"Dockerfile": dockerfile_text(spec.dockerfile).encode()}
    buildargs = {"PARENT_IMAGE": parent_ref}
    if spec.package:
        files.update(_ca_files(config))
        reqs = _requirements()
        if spec.requirements is not None:
            reqs = [r for r in reqs if _requirement_name(r) in spec.requirements]
        files["requirements.txt"] = ("\n".join(reqs) + "\n").encode()
        wheel_name, wheel = package_wheel(reqs)
        files[f"dist/{wheel_name}"] = wheel
    else:
        wheels, pinned = _local_wheels(spec, config)
        files.update(wheels)
        files["wheels/.keep"] = b""
        pip_args = spec.pip_args
        if spec.key == "pytorch" and config.torch_pip_args:
            pip_args = config.torch_pip_args
        elif pinned:
            pip_args = pinned
        buildargs["FRAMEWORK_PIP_ARGS"] = pip_args
        buildargs["FRAMEWORK_CHECK"] = spec.check
    return BuildContext(files, "Dockerfile", buildargs)


# --------------------------------------------------------------------------------------------
# Engine-side helpers


def inspect_image(api: APIClient, ref: str) -> dict[str, Any] | None:
    """``docker image inspect`` or ``None`` when absent."""
    from docker.errors import ImageNotFound, NotFound

    try:
        return api.inspect_image(ref)
    except (ImageNotFound, NotFound):
        return None


def image_labels(attrs: dict[str, Any] | None) -> dict[str, str]:
    """Labels of an inspected image (``{}`` when none)."""
    if not attrs:
        return {}
    return dict((attrs.get("Config") or {}).get("Labels") or {})


def _pull(api: APIClient, ref: str, emit: EventCallback) -> None:
    repository, version = imageref.split(ref)
    for chunk in api.pull(repository, tag=version, stream=True, decode=True):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
        emit(BuildEvent("pull", ref, _pull_line(chunk)))


def resolve_python_image(api: APIClient, config: Config, on_event: EventCallback | None = None) -> str:
    """The Python image the toolkit images start from, pulling it when needed.

    Order: the configured ``python_image`` when it is here; else, if the user never set one, the
    local stand-in from ``contestkit images bootstrap``; else a pull; else an error that says
    to run the bootstrap (the usual case on machines that reach no image registry).
    """
    emit = on_event or _noop
    wanted = config.python_image
    if inspect_image(api, wanted):
        return wanted
    explicit = config.is_set("python_image")
    if not explicit and inspect_image(api, BOOTSTRAP_IMAGE):
        return BOOTSTRAP_IMAGE
    emit(BuildEvent("info", wanted, f"pulling {wanted}"))
    try:
        _pull(api, wanted, emit)
    except Exception as exc:
        reason = _api_error_text(exc).strip().splitlines()[0][:200]
        if wanted == BOOTSTRAP_IMAGE:
            hint = "run `contestkit images bootstrap` to build it"
        elif explicit:
            hint = (
                f"pull or load it, or run `contestkit images bootstrap` and set python_image to "
                f"{BOOTSTRAP_IMAGE} (it was set by {config.sources['python_image']})"
            )
        else:
            hint = (
                "run `contestkit images bootstrap` to build a local stand-in from Debian packages "
                "(later builds use it automatically)"
            )
        raise ContestkitError(
            f"The Python base image {wanted} is not here and could not be pulled ({reason}): {hint}."
        ) from exc
    return wanted


@contextlib.contextmanager
def _client(api: APIClient | None) -> Iterator[APIClient]:
    if api is not None:
        yield api
        return
    from contestkit.containers.dockerengine import connect

    own = connect()
    try:
        yield own
    finally:
        own.close()


def image_present(ref: str, api: APIClient | None = None) -> bool:
    """Whether the engine holds ``ref`` (connecting for the call unless ``api`` is given)."""
    with _client(api) as engine:
        return inspect_image(engine, ref) is not None


@dataclass
class _Plan:
    spec: ImageSpec
    context: BuildContext
    parent_ref: str
    state: str  # "missing", "stale", "current"


def _plan(api: APIClient, spec: ImageSpec, config: Config, parent_ref: str) -> _Plan:
    parent = inspect_image(api, parent_ref)
    parent_id = parent["Id"] if parent else parent_ref
    context = build_context(spec, config, parent_ref)
    digest = context.compute_digest(parent_id)
    labels = image_labels(inspect_image(api, spec.ref))
    if not labels and inspect_image(api, spec.ref) is None:
        state = "missing"
    elif labels.get(LABEL_HASH) == digest:
        state = "current"
    else:
        state = "stale"
    return _Plan(spec, context, parent_ref, state)


def _build(api: APIClient, plan: _Plan, emit: EventCallback, nocache: bool) -> str:
    spec = plan.spec
    # Few labels on purpose: the classic builder commits one image per label.
    labels = {
        LABEL_VERSION: __version__,
        LABEL_IMAGE: spec.key,
        LABEL_HASH: plan.context.digest,
        LABEL_PARENT: plan.parent_ref,
    }
    previous = inspect_image(api, spec.ref)
    with tempfile.TemporaryFile() as tar:
        plan.context.write_tar(tar)
        image_id = stream_build(
            api,
            spec.ref,
            emit,
            fileobj=tar,
            custom_context=True,
            dockerfile=plan.context.dockerfile,
            tag=spec.ref,
            buildargs=plan.context.buildargs,
            labels=labels,
            nocache=nocache,
            rm=True,
            forcerm=True,
            pull=False,
        )
    _remove_replaced(api, previous, image_id)
    return spec.ref


def _remove_replaced(api: APIClient, previous: dict[str, Any] | None, new_id: str) -> None:
    """Delete the image a rebuild replaced, so stale toolkit images do not pile up on disk.

    Only when nothing else uses it: the engine refuses to delete an image that is still tagged
    or used by a container (without ``force``), and that refusal is fine.
    """
    from docker.errors import APIError

    if not previous or previous.get("Id", "").endswith(new_id.removeprefix("sha256:")):
        return
    try:
        api.remove_image(previous["Id"], force=False, noprune=False)
    except APIError:
        pass


def _ensure(
    api: APIClient,
    spec: ImageSpec,
    config: Config,
    emit: EventCallback,
    *,
    force: bool,
    nocache: bool,
    reason: str,
    done: dict[str, str],
) -> str:
    if spec.key in done:
        return done[spec.key]
    if spec.parent:
        parent_ref = _ensure(
            api, IMAGES[spec.parent], config, emit, force=False, nocache=nocache, reason=reason, done=done
        )
    else:
        parent_ref = resolve_python_image(api, config, emit)
    plan = _plan(api, spec, config, parent_ref)
    if plan.state == "current" and not force:
        done[spec.key] = spec.ref
        return spec.ref
    why = {"missing": f"not built yet ({reason})", "stale": "out of date with this contestkit"}.get(
        plan.state, "rebuild requested"
    )
    if force and plan.state == "current":
        why = "rebuild requested"
    emit(BuildEvent("info", spec.ref, f"building {spec.ref}: {why}, on {parent_ref}"))
    started = time.monotonic()
    _build(api, plan, emit, nocache)
    emit(BuildEvent("done", spec.ref, f"{spec.ref} built in {time.monotonic() - started:.1f}s"))
    done[spec.key] = spec.ref
    return spec.ref


def ensure_image(
    name: str,
    on_event: EventCallback | None = None,
    *,
    api: APIClient | None = None,
    config: Config | None = None,
) -> str:
    """The tag of toolkit image ``name``, building it (and what it is built on) if missing or stale.

    This is what the eval runtime calls before starting containers: with the image current it
    costs a few inspect calls; otherwise it builds and reports why through ``on_event`` (an
    ``info`` event "building ...: not built yet (first use)"), so the CLI can say so.
    """
    spec = image_spec(name)
    config = config or load_config()
    with _client(api) as client:
        return _ensure(client, spec, config, on_event or _noop, force=False, nocache=False, reason="first use", done={})


def build_images(
    names: Iterable[str] | None = None,
    on_event: EventCallback | None = None,
    *,
    api: APIClient | None = None,
    config: Config | None = None,
    force: bool = False,
    nocache: bool = False,
) -> list[str]:
    """Build the named toolkit images (default: :func:`default_images`), parents first.

    Images already current are skipped unless ``force``; ``nocache`` also bypasses Docker's layer
    cache (a clean rebuild). Returns the tags, in build order.
    """
    specs = [image_spec(n) for n in names] if names else default_images()
    config = config or load_config()
    emit = on_event or _noop
    done: dict[str, str] = {}
    with _client(api) as client:
        return [
            _ensure(
                client,
                spec,
                config,
                emit,
                force=force or nocache,
                nocache=nocache,
                reason="requested",
                done=done,
            )
            for spec in specs
        ]


# --------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class ImageInfo:
    """One row of ``contestkit images list``."""

    ref: str
    key: str | None
    state: str  # "current", "stale", "missing", "built" (not a toolkit image), "unknown"
    image_id: str = ""
    size_bytes: int = 0
    version: str = ""
    created: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form for ``--json``."""
        return {
            "image": self.ref,
            "name": self.key,
            "state": self.state,
            "id": self.image_id,
            "size_bytes": self.size_bytes,
            "size_mb": round(self.size_bytes / 1e6, 1),
            "toolkit_version": self.version,
            "created": self.created,
        }


def _info(ref: str, key: str | None, state: str, attrs: dict[str, Any] | None) -> ImageInfo:
    labels = image_labels(attrs)
    return ImageInfo(
        ref=ref,
        key=key,
        state=state,
        image_id=(attrs or {}).get("Id", "")[7:19],
        size_bytes=int((attrs or {}).get("Size", 0) or 0),
        version=labels.get(LABEL_VERSION, ""),
        created=str((attrs or {}).get("Created", ""))[:19],
        labels=labels,
    )


def list_images(api: APIClient | None = None, config: Config | None = None) -> list[ImageInfo]:
    """Every toolkit image (built or not, current or stale), the bootstrap base, and user images.

    User images are those carrying contestkit's version label (``contestkit build`` adds it).
    Staleness is only computed where the parent is present; nothing is built or pulled.
    """
    config = config or load_config()
    rows: list[ImageInfo] = []
    with _client(api) as client:
        try:
            python_ref = resolve_python_image_quiet(client, config)
        except ContestkitError:
            python_ref = None
        if python_ref:
            rows.append(_info(python_ref, "python", "current", inspect_image(client, python_ref)))
        else:
            rows.append(_info(config.python_image, "python", "missing", None))
        resolved: dict[str, str | None] = {}
        for spec in IMAGES.values():
            attrs = inspect_image(client, spec.ref)
            parent_ref = resolved.get(spec.parent) if spec.parent else python_ref
            if attrs is None:
                rows.append(_info(spec.ref, spec.key, "missing", None))
                resolved[spec.key] = None
                continue
            state = "unknown"
            if parent_ref:
                state = _plan(client, spec, config, parent_ref).state
            rows.append(_info(spec.ref, spec.key, state, attrs))
            resolved[spec.key] = spec.ref
        known = {row.ref for row in rows}
        for image in client.images(filters={"label": LABEL_VERSION}):
            for ref in image.get("RepoTags") or []:
                if ref in known or ref == "<none>:<none>":
                    continue
                known.add(ref)
                rows.append(_info(ref, None, "built", client.inspect_image(ref)))
    return rows


def resolve_python_image_quiet(api: APIClient, config: Config) -> str | None:
    """Which Python image builds would use right now, without pulling (``None``: none here)."""
    if inspect_image(api, config.python_image):
        return config.python_image
    if not config.is_set("python_image") and inspect_image(api, BOOTSTRAP_IMAGE):
        return BOOTSTRAP_IMAGE
    return None
