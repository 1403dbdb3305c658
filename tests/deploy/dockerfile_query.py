"""Reads docker/Dockerfile the way docker does, enough for tests/deploy/check_runtime_image.sh:
line continuations joined, comment lines dropped, instructions split into stages at FROM.

  dockerfile_query.py DOCKERFILE QUERY

QUERY (one answer per line on stdout; the runtime stage is the last one, the build stage the first):
  runtime-packages | build-packages   the names given to `apt-get install` in that stage's RUNs
  entrypoint | healthcheck            the exec-form command, one argument per line
  user                                the runtime stage's USER
  volumes                             the runtime stage's VOLUME paths
  copies                              the runtime stage's COPYs: FROM-STAGE<TAB>SOURCE<TAB>DEST
                                      (FROM-STAGE "-" for the build context)
Exit 1 with a message when the Dockerfile lacks what is asked (e.g. a shell-form ENTRYPOINT).
"""

import json
import re
import shlex
import sys


def instructions(text):
    """(KEYWORD, arguments) in order, as docker's parser sees them."""
    logical, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue  # a comment line, also inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    if pending.strip():
        logical.append(pending.strip())
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(text):
    found = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            found.append([])
        elif found:
            found[-1].append((keyword, rest))
    if not found:
        sys.exit("no FROM in the Dockerfile")
    return found


def apt_packages(stage):
    packages = []
    for keyword, rest in stage:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", rest):
            words = shlex.split(command)
            if "apt-get" in words and "install" in words:
                after = words[words.index("install") + 1:]
                packages += [w for w in after if not w.startswith("-")]
    return packages


def exec_form(stage, keyword):
    for key, rest in stage:
        if key != keyword:
            continue
        if keyword == "HEALTHCHECK":
            # Options (--interval=...) come before CMD.
            match = re.search(r"\bCMD\s+(\[.*\])\s*$", rest)
            if not match:
                sys.exit("HEALTHCHECK has no exec-form CMD [...]")
            rest = match.group(1)
        try:
            command = json.loads(rest)
        except json.JSONDecodeError:
            sys.exit(f"{keyword} is not in exec form (a JSON array): {rest}")
        return command
    sys.exit(f"no {keyword} in the runtime stage")


def main():
    path, query = sys.argv[1], sys.argv[2]
    all_stages = stages(open(path, encoding="utf-8").read())
    runtime, build = all_stages[-1], all_stages[0]
    if query == "runtime-packages":
        answers = apt_packages(runtime)
    elif query == "build-packages":
        answers = apt_packages(build)
    elif query in ("entrypoint", "healthcheck"):
        answers = exec_form(runtime, query.upper())
    elif query == "user":
        answers = [rest for key, rest in runtime if key == "USER"][-1:]
    elif query == "volumes":
        answers = []
        for key, rest in runtime:
            if key == "VOLUME":
                answers += json.loads(rest) if rest.startswith("[") else rest.split()
    elif query == "copies":
        answers = []
        for key, rest in runtime:
            if key != "COPY":
                continue
            words = shlex.split(rest)
            source_stage = "-"
            options = [w for w in words if w.startswith("--")]
            for option in options:
                if option.startswith("--from="):
                    source_stage = option[len("--from="):]
            paths = [w for w in words if not w.startswith("--")]
            for source in paths[:-1]:
                answers.append(f"{source_stage}\t{source}\t{paths[-1]}")
    else:
        sys.exit(f"unknown query {query}")
    if not answers:
        sys.exit(f"{path}: nothing found for {query}")
    print("\n".join(answers))


if __name__ == "__main__":
    main()
