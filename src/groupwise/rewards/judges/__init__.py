"""The test judges behind the code rewards: they run a completion's code against its tests in the sandbox
(`groupwise.sandbox`) and return a `Verdict` per sample. Python (`pyexec`, with the RPC harness `pyrpc`) and
Rust (`rust`, tests rewritten by `rust_tests` so that expected values are computed outside the solution)."""
