"""Runs inside a container's fresh mount namespace (after `ip netns exec`): mount the pod's volume
directories onto the container's mountPaths, then exec the container's command.

Sources are first bound into a private staging tmpfs, so a volume mounted over /tmp (say) cannot
hide another volume whose host directory lives under /tmp. The host paths the command needs (the
repository, its .venv and the Python installation: "keep") are staged the same way and bound back
after the volumes, so an emptyDir at /tmp cannot hide a checkout that lives under /tmp.
Stdlib only; argv[1] is JSON:
{"workdir": str, "mounts": [[source, target, "ro"|"rw"], ...], "keep": [path, ...], "argv": [...]}.
"""

import json
import os
import subprocess
import sys

STAGE = "/run/nodeagent-stage"


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def prepare(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()


def under(path: str, top: str) -> bool:
    top = top.rstrip("/") or "/"
    return top == "/" or path == top or path.startswith(top + "/")


def main() -> None:
    spec = json.loads(sys.argv[1])
    targets = [target for _, target, _ in spec["mounts"]]
    hidden = [k for k in spec.get("keep", []) if any(under(k, t) for t in targets)]
    mounts = [*spec["mounts"], *([k, k, "ro"] for k in hidden)]
    if mounts:
        os.makedirs(STAGE, exist_ok=True)
        mount("-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", STAGE)
    staged = []
    for i, (source, target, mode) in enumerate(mounts):
        is_dir = os.path.isdir(source)
        place = os.path.join(STAGE, str(i))
        prepare(place, is_dir)
        mount("--bind", source, place)
        staged.append((place, target, mode, is_dir))
    # Parents before children, as the kubelet does; kept host paths last, over the volumes.
    kept = len(mounts) - len(hidden)
    volumes = sorted(staged[:kept], key=lambda m: m[1].rstrip("/").count("/"))
    for place, target, mode, is_dir in [*volumes, *staged[kept:]]:
        prepare(target, is_dir)
        mount("--bind", place, target)
        if mode == "ro":
            mount("-o", "remount,bind,ro", target)
    if spec["workdir"]:
        os.makedirs(spec["workdir"], exist_ok=True)
        os.chdir(spec["workdir"])
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, os.environ)
    except OSError as err:
        print(f"nodeagent: cannot run {argv[0]}: {err}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
