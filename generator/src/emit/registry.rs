//! `src/lib.rs` of the registry crate: every model of `models.toml` as a `&dyn DynModel`, in manifest
//! order, and the default model's name.

use super::lit;
use crate::ModelInput;
use llmforge_spec::manifest::Manifest;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

pub fn lib_rs() -> TokenStream {
    quote! {
        //! Every model of `models.toml`, by name, for the command line: `get(name)`, `all()` and
        //! `DEFAULT_MODEL`. The module is formatted by the generator (prettyplease), so rustfmt skips it.

        #[rustfmt::skip]
        mod models;

        pub use models::{DEFAULT_MODEL, NAMES, all, get};
    }
}

pub fn models_rs(manifest: &Manifest, models: &[ModelInput]) -> TokenStream {
    let default = lit::str(&manifest.default_model);
    let count = lit::usize(models.len());
    let libs = models.iter().map(|m| format_ident!("{}", m.lib));
    let names = models.iter().map(|m| lit::str(&m.entry.name));
    quote! {
        //! The model list.

        use ::runtime::codegen::DynModel;

        /// The `default_model` of `models.toml`.
        pub const DEFAULT_MODEL: &str = #default;

        /// The model names, in `models.toml` order.
        pub const NAMES: [&str; #count] = [#(#names),*];

        static ALL: [&dyn DynModel; #count] = [#(&::#libs::MODEL),*];

        /// Every model, in `models.toml` order.
        pub fn all() -> &'static [&'static dyn DynModel] {
            &ALL
        }

        /// The model called `name` (its `models.toml` name, exactly).
        pub fn get(name: &str) -> Option<&'static dyn DynModel> {
            ALL.iter().copied().find(|m| m.name() == name)
        }
    }
}
