from resnet_bench import provenance


def test_vector_isa_names_the_widest_extension_of_the_flags():
    assert provenance.vector_isa("fpu sse4_1 sse4_2 avx sse4a avx2 fma") == "AVX2"
    assert provenance.vector_isa("sse4_2 avx avx2 avx512f avx512bw avx512_vnni") == "AVX-512"
    assert provenance.vector_isa("avx2 avx512f amx_tile amx_bf16") == "AMX"
    assert provenance.vector_isa("fp asimd evtstrm aes") == "NEON"
    assert provenance.vector_isa("fpu vme de") == "unknown"


def test_vector_isa_reads_this_machine():
    assert provenance.vector_isa() in {name for _, name in provenance._VECTOR_ISAS} | {"unknown"}
