#!/usr/bin/python3
"""The deploy files in docker/ are consistent with each other and with the repository.

No Docker engine runs on the development machines, so nothing here builds or runs an image.
What can be checked without one is: the YAML parses; every file, build context and image a
file names exists or is built by a Dockerfile here; capabilities are exactly dnsd's two
(NET_ADMIN, NET_BIND_SERVICE) and none for the session; the runtime stages install no -dev
package and every shared library `ldd` lists for the built binaries; the Dockerfiles build with
scripts/install-deps.sh and scripts/build.sh, as CI does; the configs they ship pass
`dnsd --check-config`; every shell script passes shellcheck.

Run: DNSD=build/dnsd/dnsd JAIL=build/jail/jail /usr/bin/python3 tests/deploy/test_deploy_files.py
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
DNSD_CAPS = {"NET_ADMIN", "NET_BIND_SERVICE"}
# image name -> the Dockerfile that builds it (compose's build: sections say the same).
IMAGES = {"egress/dnsd": DOCKER / "Dockerfile.dnsd", "egress/session": DOCKER / "Dockerfile.session"}
# Libraries every Debian image has (essential packages of debian:12-slim).
BASE_PACKAGES = {"libc6", "libgcc-s1"}


def ci() -> bool:
    return os.environ.get("CI") == "true"


def load_yaml_docs(path: Path) -> list:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def image_name(ref: str) -> str:
    return ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref


# --- Dockerfiles ------------------------------------------------------------------------------

class Stage:
    def __init__(self, base: str, name: str):
        self.base, self.name = base, name
        self.instructions: "list[tuple[str, str]]" = []  # (INSTRUCTION, arguments)

    def args(self, instruction: str) -> list:
        return [a for i, a in self.instructions if i == instruction]

    def apt_packages(self) -> set:
        pkgs = set()
        for run in self.args("RUN"):
            for cmd in re.split(r"&&|;", run):
                words = shlex.split(cmd)
                if words[:2] == ["apt-get", "install"]:
                    pkgs |= {w for w in words[2:] if not w.startswith("-")}
        return pkgs


def parse_dockerfile(path: Path) -> "list[Stage]":
    """Stages with their instructions; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")))
    stages: "list[Stage]" = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instr, _, rest = line.strip().partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            stages.append(Stage(m.group(1), m.group(2) or ""))
        else:
            stages[-1].instructions.append((instr, rest.strip()))
    return stages


def needed_packages(binary: str) -> set:
    """Debian packages of the binary's own DT_NEEDED libraries (apt brings their dependencies),
    located where `ldd` resolves them."""
    dynamic = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                             check=True).stdout
    needed = {n for n in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
              if not n.startswith("ld-linux")}  # the dynamic loader: libc6
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    resolved = dict(re.findall(r"(?m)^\s*(\S+) => (\S+) \(", out))
    if needed - set(resolved):
        raise AssertionError(f"ldd does not resolve {needed - set(resolved)} for {binary}")
    pkgs = set()
    for lib in (resolved[n] for n in sorted(needed)):
        real = os.path.realpath(lib)
        owner = None
        for candidate in (lib, real, real.replace("/usr/lib/", "/lib/"),
                          real.replace("/lib/", "/usr/lib/", 1)):
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":", 1)[0]
                break
        if owner is None:
            raise AssertionError(f"no Debian package owns {lib} (needed by {binary})")
        pkgs.add(owner)
    return pkgs


class TestDockerfiles(unittest.TestCase):
    def stages(self, name: str) -> "list[Stage]":
        return parse_dockerfile(DOCKER / name)

    def test_build_stage_uses_the_ci_scripts(self):
        for name, target in (("Dockerfile.dnsd", "dnsd"), ("Dockerfile.session", "jail")):
            with self.subTest(name=name):
                build = self.stages(name)[0]
                self.assertEqual(build.base, "debian:12")
                runs = " ".join(build.args("RUN"))
                self.assertIn("scripts/install-deps.sh --build-only", runs)
                self.assertIn(f"scripts/build.sh {target}", runs)

    def test_runtime_stage_is_slim_nonroot_without_dev_packages(self):
        for name in ("Dockerfile.dnsd", "Dockerfile.session"):
            with self.subTest(name=name):
                runtime = self.stages(name)[-1]
                self.assertEqual(runtime.base, "debian:12-slim")
                pkgs = runtime.apt_packages()
                self.assertTrue(pkgs)
                self.assertEqual({p for p in pkgs if p.endswith("-dev")}, set())
                users = runtime.args("USER")
                self.assertEqual(len(users), 1)
                self.assertNotIn(users[0].split(":")[0], ("0", "root"))
                self.assertTrue(runtime.args("ENTRYPOINT"))

    def test_copied_files_exist(self):
        for name in ("Dockerfile.dnsd", "Dockerfile.session"):
            for stage in self.stages(name):
                for arg in stage.args("COPY"):
                    words = shlex.split(arg)
                    if any(w.startswith("--from=") for w in words):
                        continue
                    for src in words[:-1]:
                        with self.subTest(dockerfile=name, src=src):
                            self.assertTrue((REPO / src).exists() or src == ".", src)

    def test_dnsd_file_capabilities_are_exactly_two(self):
        runtime = self.stages("Dockerfile.dnsd")[-1]
        setcaps = re.findall(r"setcap\s+(\S+)\s+(\S+)", " ".join(runtime.args("RUN")))
        self.assertEqual(len(setcaps), 1, setcaps)
        caps, binary = setcaps[0]
        spec, _, flags = caps.partition("+")
        self.assertEqual({c.upper().removeprefix("CAP_") for c in spec.split(",")}, DNSD_CAPS)
        self.assertEqual(flags, "ep")
        self.assertEqual(binary, "/usr/local/bin/dnsd")
        self.assertIn('"/usr/local/bin/dnsd"', runtime.args("ENTRYPOINT")[0])

    def test_session_entrypoint_is_the_jail_with_the_policies(self):
        runtime = self.stages("Dockerfile.session")[-1]
        self.assertTrue(runtime.args("ENTRYPOINT")[0].startswith('["/usr/local/bin/jail"'))
        self.assertIn("policies/jail/ /etc/egress/jail/", runtime.args("COPY"))
        self.assertIn("python3", runtime.apt_packages())
        for p in (REPO / "policies/jail").glob("*.yaml"):
            self.assertTrue(p.read_text().strip(), p)
        self.assertTrue((REPO / "policies/jail/default.yaml").exists())

    def test_session_image_compiles_the_policies_it_ships(self):
        runs = " ".join(self.stages("Dockerfile.session")[-1].args("RUN"))
        shipped = sorted(p.stem for p in (REPO / "policies/jail").glob("*.yaml"))
        m = re.search(r"for p in ([\w ]+); do\s+/usr/local/bin/jail --policies-dir "
                      r"/etc/egress/jail --compile-policy \"\$p\"", runs)
        self.assertIsNotNone(m, runs)
        self.assertEqual(sorted(m.group(1).split()), shipped)
        # What that RUN does, with the built jail on a copy of the policies: each compiled file
        # is one the same jail then uses.
        binary = os.environ.get("JAIL", "")
        if not binary or not os.path.exists(binary):
            if ci():
                self.fail(f"JAIL={binary!r} not built")
            self.skipTest(f"JAIL not built ({binary!r})")
        with tempfile.TemporaryDirectory() as d:
            for p in shipped:
                (Path(d) / f"{p}.yaml").write_bytes((REPO / f"policies/jail/{p}.yaml").read_bytes())
            for p in shipped:
                r = subprocess.run([binary, "--policies-dir", d, "--compile-policy", p],
                                   capture_output=True, text=True)
                self.assertEqual((r.returncode, r.stdout), (0, f"{d}/{p}.yaml.compiled: written\n"),
                                 r.stderr)
                r = subprocess.run([binary, "--policies-dir", d, "--check-policy", p],
                                   capture_output=True, text=True)
                self.assertEqual(r.stdout, f"{p}: ok\n{d}/{p}.yaml.compiled: current\n", r.stderr)

    def test_runtime_stage_has_every_library_the_binary_needs(self):
        for env, name in (("DNSD", "Dockerfile.dnsd"), ("JAIL", "Dockerfile.session")):
            with self.subTest(binary=env):
                binary = os.environ.get(env, "")
                if not binary or not os.path.exists(binary):
                    if ci():
                        self.fail(f"{env}={binary!r} not built")
                    self.skipTest(f"{env} not built ({binary!r}): cannot run ldd")
                missing = needed_packages(binary) - BASE_PACKAGES - \
                    self.stages(name)[-1].apt_packages()
                self.assertEqual(missing, set(), f"{name} lacks runtime packages for {binary}")

    def test_jail_is_static_so_the_session_image_installs_no_library(self):
        binary = os.environ.get("JAIL", "")
        if not binary or not os.path.exists(binary):
            if ci():
                self.fail(f"JAIL={binary!r} not built")
            self.skipTest(f"JAIL not built ({binary!r})")
        dynamic = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                                 check=True).stdout
        self.assertNotIn("(NEEDED)", dynamic, "jail is linked with -static-pie")
        self.assertNotIn("program interpreter", subprocess.run(["readelf", "-l", binary],
                                                    capture_output=True, text=True).stdout)
        self.assertEqual(self.stages("Dockerfile.session")[-1].apt_packages(), {"python3"})

    def test_build_context_ignores_host_builds(self):
        ignore = (REPO / ".dockerignore").read_text().split()
        self.assertIn("build/", ignore)


# --- compose ----------------------------------------------------------------------------------

class TestCompose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        (cls.compose,) = load_yaml_docs(DOCKER / "compose.yaml")
        cls.services = cls.compose["services"]

    def test_services_and_shared_network(self):
        self.assertEqual(set(self.services), {"dnsd", "session"})
        session = self.services["session"]
        self.assertEqual(session["network_mode"], "service:dnsd")
        self.assertEqual(session["depends_on"], {"dnsd": {"condition": "service_healthy"}})
        # Docker refuses `dns` with a container network mode; resolv.conf is mounted instead.
        self.assertNotIn("dns", session)
        mounts = session["volumes"]
        self.assertIn("./session-resolv.conf:/etc/resolv.conf:ro", mounts)
        servers = [ln.split()[1] for ln in (DOCKER / "session-resolv.conf").read_text().splitlines()
                   if ln.startswith("nameserver")]
        self.assertEqual(servers, ["127.0.0.1"])

    def test_healthcheck_is_check_ready(self):
        test = self.services["dnsd"]["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD")
        self.assertEqual(test[1], "/usr/local/bin/dnsd")
        self.assertIn("--check-ready", test)

    def test_capabilities_are_exactly_the_listed_ones(self):
        dnsd, session = self.services["dnsd"], self.services["session"]
        self.assertEqual(dnsd["cap_drop"], ["ALL"])
        self.assertEqual(sorted(dnsd["cap_add"]), sorted(DNSD_CAPS))
        self.assertEqual(session["cap_drop"], ["ALL"])
        self.assertNotIn("cap_add", session)
        for name, svc in self.services.items():
            with self.subTest(service=name):
                self.assertFalse(svc.get("privileged", False))
                # File capabilities do not work under no_new_privs.
                if name == "dnsd":
                    self.assertNotIn("no-new-privileges:true", svc.get("security_opt", []))

    def test_builds_files_and_images_exist(self):
        for name, svc in self.services.items():
            with self.subTest(service=name):
                build = svc["build"]
                context = (DOCKER / build["context"]).resolve()
                self.assertEqual(context, REPO)
                dockerfile = context / build["dockerfile"]
                self.assertTrue(dockerfile.is_file(), dockerfile)
                self.assertEqual(IMAGES[image_name(svc["image"])], dockerfile)
                for v in svc.get("volumes", []):
                    src = v.split(":")[0]
                    self.assertTrue((DOCKER / src).exists(), f"{name}: {src} does not exist")

    def test_dnsd_mounts_the_allowlist_directory(self):
        mounts = self.services["dnsd"]["volumes"]
        self.assertIn("../policies:/etc/egress:ro", mounts)
        self.assertTrue((REPO / "policies/allowlist.yaml").is_file())


# --- Kubernetes -------------------------------------------------------------------------------

class TestKubernetes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        (cls.pod,) = load_yaml_docs(K8S / "pod.yaml")
        cls.configmaps = {d["metadata"]["name"]: d for d in load_yaml_docs(K8S / "configmap.yaml")}
        spec = cls.pod["spec"]
        cls.init = {c["name"]: c for c in spec.get("initContainers", [])}
        cls.containers = {c["name"]: c for c in spec["containers"]}

    def all_containers(self):
        return list(self.init.values()) + list(self.containers.values())

    def test_kinds(self):
        self.assertEqual(self.pod["kind"], "Pod")
        self.assertEqual(self.pod["apiVersion"], "v1")
        self.assertEqual(set(self.configmaps), {"egress-allowlist", "egress-dnsd"})
        for cm in self.configmaps.values():
            self.assertEqual((cm["apiVersion"], cm["kind"]), ("v1", "ConfigMap"))

    def test_table_installed_by_an_init_container(self):
        (init,) = self.init.values()
        self.assertEqual(image_name(init["image"]), "egress/dnsd")
        self.assertIn("--install-only", init["args"])
        self.assertEqual(set(self.containers), {"dnsd", "session"})
        probe = self.containers["dnsd"]["readinessProbe"]["exec"]["command"]
        self.assertEqual(probe[0], "/usr/local/bin/dnsd")
        self.assertIn("--check-ready", probe)

    def test_images_are_built_here(self):
        for c in self.all_containers():
            with self.subTest(container=c["name"]):
                self.assertTrue(IMAGES[image_name(c["image"])].is_file())

    def test_dns_points_at_the_sidecar(self):
        spec = self.pod["spec"]
        self.assertEqual(spec["dnsPolicy"], "None")
        self.assertEqual(spec["dnsConfig"], {"nameservers": ["127.0.0.1"]})

    def test_capabilities_are_exactly_the_listed_ones(self):
        self.assertTrue(self.pod["spec"]["securityContext"]["runAsNonRoot"])
        for c in self.all_containers():
            with self.subTest(container=c["name"]):
                sc = c["securityContext"]
                self.assertTrue(sc["runAsNonRoot"])
                self.assertNotEqual(sc.get("runAsUser"), 0)
                self.assertFalse(sc.get("privileged", False))
                caps = sc["capabilities"]
                self.assertEqual(caps["drop"], ["ALL"])
                if image_name(c["image"]) == "egress/dnsd":
                    self.assertEqual(sorted(caps["add"]), sorted(DNSD_CAPS))
                    self.assertTrue(sc["allowPrivilegeEscalation"])  # file capabilities
                else:
                    self.assertNotIn("add", caps)
                    self.assertFalse(sc["allowPrivilegeEscalation"])

    def test_configmaps_mounted_as_directories(self):
        volumes = {v["name"]: v for v in self.pod["spec"]["volumes"]}
        for v in volumes.values():
            self.assertIn(v["configMap"]["name"], self.configmaps)
        for c in self.all_containers():
            if image_name(c["image"]) != "egress/dnsd":
                continue
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            with self.subTest(container=c["name"]):
                self.assertEqual(volumes[mounts["/etc/egress"]["name"]]["configMap"]["name"],
                                 "egress-allowlist")
                self.assertNotIn("subPath", mounts["/etc/egress"])  # subPath never updates
                self.assertEqual(volumes[mounts["/etc/dnsd"]["name"]]["configMap"]["name"],
                                 "egress-dnsd")
                self.assertIn("/etc/dnsd/dnsd.yaml", c["args"])

    def test_resources_are_set(self):
        res = self.containers["dnsd"]["resources"]
        self.assertIn("cpu", res["requests"])
        self.assertIn("memory", res["requests"])
        self.assertIn("memory", res["limits"])


# --- the configs the deploy files ship pass dnsd's own validation ---------------------------

class TestShippedConfigs(unittest.TestCase):
    def dnsd(self) -> str:
        binary = os.environ.get("DNSD", "")
        if not binary or not os.access(binary, os.X_OK):
            if ci():
                self.fail(f"DNSD={binary!r} not built")
            self.skipTest(f"DNSD not built ({binary!r})")
        return binary

    def check(self, config: Path, allowlist: Path):
        r = subprocess.run([self.dnsd(), "--check-config", "--config", str(config),
                            "--allowlist", str(allowlist)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_docker_config(self):
        self.check(DOCKER / "dnsd.yaml", REPO / "policies/allowlist.yaml")
        config = yaml.safe_load((DOCKER / "dnsd.yaml").read_text())
        self.assertEqual(config["allowlist"], "/etc/egress/allowlist.yaml")  # compose's mount

    def test_k8s_configmaps(self):
        cms = {d["metadata"]["name"]: d for d in load_yaml_docs(K8S / "configmap.yaml")}
        with tempfile.TemporaryDirectory() as tmp:
            allowlist = Path(tmp) / "allowlist.yaml"
            config = Path(tmp) / "dnsd.yaml"
            allowlist.write_text(cms["egress-allowlist"]["data"]["allowlist.yaml"])
            config.write_text(cms["egress-dnsd"]["data"]["dnsd.yaml"])
            self.check(config, allowlist)
        parsed = yaml.safe_load(cms["egress-dnsd"]["data"]["dnsd.yaml"])
        self.assertEqual(parsed["allowlist"], "/etc/egress/allowlist.yaml")
        self.assertTrue(parsed["upstream"], "the pod's resolv.conf is dnsd itself: set upstream")


# --- shell scripts ----------------------------------------------------------------------------

def shell_scripts() -> "list[Path]":
    out = []
    for p in sorted(REPO.rglob("*")):
        rel = p.relative_to(REPO).parts
        if not p.is_file() or rel[0] in (".git", "build") or "build" in rel[0]:
            continue
        if p.suffix == ".sh":
            out.append(p)
            continue
        with open(p, "rb") as f:
            head = f.readline(100)
        if re.match(rb"#!\s*\S*/(env\s+)?(ba|da)?sh\b", head):
            out.append(p)
    return out


class TestShellScripts(unittest.TestCase):
    def test_found(self):
        names = {str(p.relative_to(REPO)) for p in shell_scripts()}
        for expected in ("scripts/install-deps.sh", "scripts/build.sh", "bench/dns.sh", ".ci/run"):
            self.assertIn(expected, names)

    def test_shellcheck(self):
        scripts = shell_scripts()
        r = subprocess.run(["shellcheck", "--format=gcc", *map(str, scripts)],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_install_deps_build_only_is_a_subset(self):
        """--build-only (the Dockerfiles') lists the toolchain and libraries only."""
        text = (REPO / "scripts/install-deps.sh").read_text()
        self.assertIn('[ "${1:-}" = "--build-only" ]', text)
        for pkg in ("python3-yaml", "shellcheck"):
            self.assertRegex(text, rf"(?m)^\s+.*\b{re.escape(pkg)}\b")


if __name__ == "__main__":
    unittest.main(verbosity=2)
