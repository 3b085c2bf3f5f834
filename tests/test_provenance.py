from resnet_bench import provenance


def test_vector_isa_names_the_widest_extension_of_the_flags():
    assert provenance.vector_isa("fpu sse4_1 sse4_2 avx sse4a avx2 fma") == "AVX2"
    assert provenance.vector_isa("sse4_2 avx avx2 avx512f avx512bw avx512_vnni") == "AVX-512"
    assert provenance.vector_isa("avx2 avx512f amx_tile amx_bf16") == "AMX"
    assert provenance.vector_isa("fp asimd evtstrm aes") == "NEON"
    assert provenance.vector_isa("fpu vme de") == "unknown"


def test_vector_isa_reads_this_machine():
    assert provenance.vector_isa() in {name for _, name in provenance._VECTOR_ISAS} | {"unknown"}


def test_a_report_written_into_the_checkout_does_not_make_the_code_dirty(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "pkg").mkdir()
    for f in ("reports/r.md", "pkg/code.py"):
        (tmp_path / f).write_text("a\n")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    commit, dirty = provenance.git_state(tmp_path / "pkg")
    assert len(commit) == 40 and not dirty
    (tmp_path / "reports" / "r.md").write_text("b\n")  # make bench wrote its report
    assert provenance.git_state(tmp_path / "pkg") == (commit, False)
    (tmp_path / "pkg" / "code.py").write_text("b\n")
    assert provenance.git_state(tmp_path / "pkg") == (commit, True)


def test_the_committed_version_of_a_file_or_why_there_is_none(tmp_path):
    import subprocess

    from resnet_bench.provenance import committed_text

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    report = tmp_path / "reports" / "x.md"
    report.parent.mkdir()
    report.write_text("# committed\n")
    assert committed_text(report) == (None, f"{report.resolve()} is not in a git checkout")
    git("init", "-q")
    assert committed_text(report) == (None, "reports/x.md is not committed")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    report.write_text("# overwritten by a fresh run\n")
    assert committed_text(report) == (None, "reports/x.md has changed since the last commit")
    git("checkout", "-q", "--", "reports/x.md")
    assert committed_text(report) == ("# committed\n", "")
