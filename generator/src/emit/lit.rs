//! Literal tokens for spec values. Floats are written in Rust's shortest round-trip form, so the
//! emitted constant is the exact `f64` the config parser produced.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

pub fn usize(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

pub fn u32(n: u32) -> Literal {
    Literal::u32_unsuffixed(n)
}

pub fn u64(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

/// A finite `f64` (the caller checks finiteness; the config parser refuses non-finite values).
pub fn f64(x: f64) -> Literal {
    Literal::f64_unsuffixed(x)
}

pub fn str(s: &str) -> Literal {
    Literal::string(s)
}

pub fn opt_u32(v: Option<u32>) -> TokenStream {
    match v {
        Some(n) => {
            let n = u32(n);
            quote!(Some(#n))
        }
        None => quote!(None),
    }
}

pub fn opt_str(v: Option<&str>) -> TokenStream {
    match v {
        Some(s) => {
            let s = str(s);
            quote!(Some(#s))
        }
        None => quote!(None),
    }
}

/// `text` as doc-comment lines of at most ~100 columns, each starting with a space (`/// text`).
pub fn doc_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 96 {
            lines.push(std::mem::take(&mut line));
        }
        line.push(' ');
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
