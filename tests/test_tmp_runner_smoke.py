import sys, os
def test_platform():
    assert sys.platform == "emscripten", sys.platform
    assert os.getcwd() == os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def test_fail_visible():
    import llamart
    assert llamart.__file__.startswith(os.getcwd())
