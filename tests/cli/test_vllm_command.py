"""`sportlens vllm` without a server: what it says when there is nothing to stop or no checkpoint to serve."""


def test_stop_without_a_server_is_one_line_and_exit_2(sportlens, tmp_path):
    run = sportlens("vllm", "stop", "--port", "1", env_home=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "no vLLM server started by sportlens runs on port 1" in run.stderr


def test_start_without_a_checkpoint_is_one_line_and_exit_2(sportlens, tmp_path):
    run = sportlens("vllm", "start", "--model", tmp_path / "missing", env_home=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no checkpoint directory" in run.stderr
    assert not (tmp_path / "vllm").exists()  # nothing was installed for it
