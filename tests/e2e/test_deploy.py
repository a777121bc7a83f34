"""Deploying Tollgate into an Envoy of one's own: `envoy/hand-written.yaml` run as its comment says,
deployments routed to clusters the platform defines (Istio's `outbound|443||host`), and `make demo`
on a machine where its default ports are taken."""

import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request

import openai
import pytest
import yaml

from harness import ENVOY, FILTER, MODULE, ROOT, WASM, Envoy, check_built, free_port, run_cli
from mocks.openai_mock import OPENAI_KEY

HAND_WRITTEN = os.path.join(ROOT, "envoy", "hand-written.yaml")


def wait_ready(proc, admin_port, log_path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise AssertionError(f"exited with {proc.returncode}:\n{f.read()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready in {timeout}s")


def prometheus(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?format=prometheus", timeout=10) as r:
        return r.read().decode()


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# envoy/hand-written.yaml -----------------------------------------------------------------------

def documented_run():
    """The environment and command of the file's run comment: ({NAME: value}, argv)."""
    with open(HAND_WRITTEN) as f:
        for line in f:
            if line.startswith("#") and "envoy -c envoy/hand-written.yaml" in line:
                words = shlex.split(line.lstrip("#"))
                at = next(i for i, w in enumerate(words) if w.endswith("envoy") and words[i + 1:i + 2] == ["-c"])
                env = {}
                for w in reversed(words[:at]):
                    if not re.match(r"^[A-Z_][A-Z0-9_]*=", w):
                        break
                    name, _, value = w.partition("=")
                    env[name] = value
                return env, words[at:at + 3]
    raise AssertionError("hand-written.yaml says nowhere how to run it")


def as_documented(tmp_path, port, admin_port, upstream_port):
    """hand-written.yaml with its documented substitutions only: the two `port_value`s, and for
    the test, the OpenAI cluster's endpoint pointed at the mock (which speaks plain HTTP). The
    module form swaps the wasm filter for the module filter the way envoy/README.md says."""
    with open(HAND_WRITTEN) as f:
        b = yaml.safe_load(f)
    b["admin"]["address"]["socket_address"]["port_value"] = admin_port
    [listener] = b["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = port
    [cluster] = b["static_resources"]["clusters"]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] = {
        "address": "127.0.0.1", "port_value": upstream_port}
    del cluster["transport_socket"]          # plain HTTP/1.1 to the mock, so no ALPN either
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    del options["auto_config"]
    options["explicit_http_config"] = {"http_protocol_options": {}}
    if FILTER == "module":
        filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        i = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.wasm")
        config = filters[i]["typed_config"]["config"]["configuration"]
        filters[i] = {"name": "tollgate", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"module": {"local": {"filename": MODULE}}, "do_not_close": True},
            "filter_name": "tollgate", "filter_config": config}}
        b["layered_runtime"] = {"layers": [{"name": "tollgate", "static_layer": {
            "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": True}}]}
    path = tmp_path / "hand-written.yaml"
    path.write_text(yaml.safe_dump(b))
    return path


def test_hand_written_example_runs_as_documented(tmp_path, mocks):
    check_built()
    env, argv = documented_run()
    assert argv[1:] == ["-c", "envoy/hand-written.yaml"], argv
    assert os.path.exists(os.path.join(ROOT, "target/wasm32-wasip1/release/tollgate.wasm")) or FILTER == "module"
    # The documented variables, the provider key being the mock's; nothing else of Tollgate's.
    env = {**env, "OPENAI_API_KEY": OPENAI_KEY}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "OPENAI_"))}
    port, admin_port = free_port(), free_port()
    config = as_documented(tmp_path, port, admin_port, mocks["openai"].port)
    log_path = tmp_path / "envoy.log"
    with open(log_path, "w") as log:
        # From the repository root, as the comment says: the wasm path is relative to it.
        proc = subprocess.Popen([ENVOY, "-c", str(config), "--use-dynamic-base-id", "-l", "info"], cwd=ROOT,
                                env={**base, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, admin_port, log_path)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=env["TOLLGATE_MASTER_KEY"],
                               max_retries=0, timeout=20)
        r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hello there"}])
        assert r.choices[0].message.content
        got = mocks["openai"].last()
        assert got.path == "/v1/chat/completions" and got.headers["host"] == "api.openai.com"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong", max_retries=0,
                          timeout=20).models.list()

        # The metric is a labelled series, not one flattened name per label set.
        text = prometheus(admin_port)
        series = [line for line in text.splitlines() if line.startswith("tollgate_requests_total")]
        assert any(re.match(r'^tollgate_requests_total\{.*model="gpt".*provider="openai".*status="2xx".*\} 1$', line)
                   for line in series), "\n".join(series) or text[-3000:]
        assert not [line for line in series if line.startswith("tollgate_requests_total_")], series
    finally:
        stop(proc)


def test_hand_written_stats_tags_are_the_rendered_ones():
    with open(HAND_WRITTEN) as f:
        hand = yaml.safe_load(f)
    with open(os.path.join(ROOT, "envoy", "tollgate.rendered.yaml")) as f:
        rendered = yaml.safe_load(f)
    assert hand["stats_config"] == rendered["stats_config"]


# model_info.envoy_cluster ---------------------------------------------------------------------

ISTIO = "outbound|443||api.example.com"
MISSING = "outbound|443||missing.example.com"


class PlatformEnvoy(Envoy):
    """An Envoy whose bootstrap is `tollgate render`'s plus clusters the platform defines."""

    def __init__(self, config, env, own_clusters):
        super().__init__(config, env=env)
        self.own_clusters = own_clusters
        self.rendered_clusters = None

    def render(self):
        super().render()
        with open(self.envoy_yaml) as f:
            b = yaml.safe_load(f)
        self.rendered_clusters = [c["name"] for c in b["static_resources"]["clusters"]]
        b["static_resources"]["clusters"].extend(self.own_clusters)
        with open(self.envoy_yaml, "w") as f:
            yaml.safe_dump(b, f)


def plain_cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def mesh_config():
    lp = {"api_base": "https://api.example.com/v1", "api_key": "os.environ/OPENAI_API_KEY"}
    return {
        "model_list": [
            {"model_name": "mesh", "litellm_params": {"model": "openai/gpt-4o-mini", **lp},
             "model_info": {"envoy_cluster": ISTIO}},
            # A group with two deployments goes through the attempt listener: it routes there too.
            {"model_name": "mesh-pair", "litellm_params": {"model": "openai/gpt-4o-mini", **lp},
             "model_info": {"envoy_cluster": ISTIO}},
            {"model_name": "mesh-pair", "litellm_params": {"model": "openai/gpt-4o", **lp},
             "model_info": {"envoy_cluster": ISTIO}},
            {"model_name": "nowhere", "litellm_params": {"model": "openai/gpt-4o-mini", **lp},
             "model_info": {"envoy_cluster": MISSING}},
        ],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
    }


def test_a_deployment_routes_to_the_platforms_cluster(tmp_path, mocks):
    mock = mocks["openai"]
    config = mesh_config()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    check = run_cli("check", str(path), env={**os.environ, "OPENAI_API_KEY": OPENAI_KEY, "TOLLGATE_MASTER_KEY": "sk-m"})
    assert check.returncode == 0, check.stderr
    assert f"routes to Envoy's own cluster '{ISTIO}' (model_list[0].model_info.envoy_cluster)" in check.stdout

    envoy = PlatformEnvoy(config, env={"OPENAI_API_KEY": OPENAI_KEY, "TOLLGATE_MASTER_KEY": "sk-m"},
                          own_clusters=[plain_cluster(ISTIO, mock.port)])
    with envoy:
        # `tollgate render` wrote no cluster for these deployments.
        assert not [c for c in envoy.rendered_clusters if "example.com" in c], envoy.rendered_clusters
        client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-m", max_retries=0, timeout=20)
        for alias in ("mesh", "mesh-pair"):
            r = client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "through the mesh"}])
            assert r.choices[0].message.content
            got = mock.last()
            assert got.path == "/v1/chat/completions", alias
            assert got.headers["host"] == "api.example.com", alias
            assert "x-tollgate-cluster" not in got.headers

        # A named cluster Envoy does not have: an OpenAI-shaped 500 saying where it is named.
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="nowhere", messages=[{"role": "user", "content": "x"}])
        err = e.value.body
        assert err["code"] == "gateway_misconfigured", err
        assert MISSING in err["message"] and "model_info.envoy_cluster" in err["message"], err


def test_a_bad_envoy_cluster_is_refused_with_its_path(tmp_path):
    config = mesh_config()
    config["model_list"][1]["model_info"]["envoy_cluster"] = "tollgate_api.example.com_443"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    r = run_cli("check", str(path))
    assert r.returncode == 1
    assert "model_list[1].model_info.envoy_cluster: 'tollgate_api.example.com_443' is named like the clusters" in r.stderr + r.stdout

    # The filter refuses it the same way when Envoy loads it.
    config["model_list"][1]["model_info"]["envoy_cluster"] = "outbound 443 api.example.com"
    envoy = Envoy(config, env={"OPENAI_API_KEY": OPENAI_KEY, "TOLLGATE_MASTER_KEY": "sk-m"})
    # `tollgate render` refuses too, so hand the filter the config in a bootstrap of its own.
    envoy.render = lambda: _render_unchecked(envoy, config)
    envoy.start(expect_failure=True)
    try:
        assert envoy.wait_exit() not in (None, 0)
        assert "model_list[1].model_info.envoy_cluster" in envoy.log()
    finally:
        envoy.stop()


def _render_unchecked(envoy, config):
    import json
    from render_helpers import minimal_bootstrap, minimal_module_bootstrap
    plugin = json.dumps(config)
    if envoy.filter == "module":
        b = minimal_module_bootstrap(plugin, envoy.port, envoy.admin_port, MODULE)
    else:
        b = minimal_bootstrap(plugin, envoy.port, envoy.admin_port, WASM)
    with open(envoy.envoy_yaml, "w") as f:
        yaml.safe_dump(b, f)


# make demo ------------------------------------------------------------------------------------

def session_processes(sid):
    """Pids of live processes in session `sid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, session.
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(d))
    return out


def occupy(port):
    """Holds 127.0.0.1:port (None when something else holds it already: busy either way)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        return s
    except OSError:
        s.close()
        return None


def make_demo(tmp_path, *args):
    """`make demo` in its own session, built artifacts assumed (`-o build`: not rebuilt here)."""
    out = open(tmp_path / "demo.out", "w+")
    proc = subprocess.Popen(["make", "--no-print-directory", "-o", "build", "demo", f"DEMO_DIR={tmp_path}", *args],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k not in ("MOCK_PORT", "MAKEFLAGS")})
    return proc, out


def ended(proc, out, timeout=30):
    """Waits for `make demo` to end (killing its session if it does not); its output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise
    finally:
        deadline = time.time() + 10
        while session_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        left = session_processes(proc.pid)
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
        assert not left, f"make demo left processes behind: {left}"
    out.seek(0)
    return out.read()


def test_make_demo_moves_off_a_busy_mock_port(tmp_path):
    check_built("wasm")
    held = occupy(9100)
    port, admin_port = free_port(), free_port()
    proc, out = make_demo(tmp_path, f"LISTEN=127.0.0.1:{port}", f"ADMIN=127.0.0.1:{admin_port}")
    try:
        deadline = time.time() + 60
        ready = False
        while time.time() < deadline and proc.poll() is None and not ready:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                    ready = r.status == 200
            except OSError:
                time.sleep(0.2)
        out.seek(0)
        text = out.read()
        assert ready, text
        assert "port 9100 is busy: mock " in text, text
        assert not re.search(r"127\.0\.0\.1:9100\b", text), text
        env = (tmp_path / "demo.env").read_text()
        assert "TOLLGATE_MASTER_KEY=" in env
        key = re.search(r"TOLLGATE_MASTER_KEY=(\S+)", env).group(1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=20)
        r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "demo"}])
        assert r.choices[0].message.content
    finally:
        # Ctrl-C, as a user stops it.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        text = ended(proc, out)
        if held:
            held.close()
    assert "Traceback" not in text, text


def test_make_demo_names_a_busy_gateway_port(tmp_path):
    check_built("wasm")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy = held.getsockname()[1]
    try:
        proc, out = make_demo(tmp_path, f"LISTEN=127.0.0.1:{busy}", f"ADMIN=127.0.0.1:{free_port()}",
                              f"MOCK_PORT={free_port()}")
        text = ended(proc, out)
    finally:
        held.close()
    assert proc.returncode != 0
    assert f"make demo: 127.0.0.1:{busy} (LISTEN) is in use" in text, text
    assert "Traceback" not in text, text
    assert not (tmp_path / "demo.env").exists()
