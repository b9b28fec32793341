//! Misuse of the generated typed API does not compile (trybuild; the expected errors are the `.stderr`
//! files beside each case in `tests/ui/`).

#[test]
fn typed_api_misuse_does_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
