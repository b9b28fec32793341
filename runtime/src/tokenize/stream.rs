//! [`StreamDecoder`]: text out as ids come in. A byte-level BPE token can end in the middle of a UTF-8
//! character (an emoji is often two or three tokens); the decoder then yields U+FFFD for the partial
//! bytes, so text ending in U+FFFD is held back until the next id completes it. What is returned is
//! always a suffix of the full decode of every id pushed so far, and the pieces concatenate to it.

use super::{StreamDecoder, TokenizerError};

const REPLACEMENT: char = '\u{FFFD}';

impl StreamDecoder<'_> {
    /// Add one id; returns the new text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        match self.pending()? {
            Some(text) if !text.ends_with(REPLACEMENT) => {
                self.prefix = self.emitted;
                self.emitted = self.ids.len();
                Ok(text)
            }
            _ => Ok(String::new()),
        }
    }

    /// Whatever text remains (e.g. an incomplete character at the end, as U+FFFD).
    pub fn finish(self) -> Result<String, TokenizerError> {
        let (done, all) = self.decode_window()?;
        Ok(match all.get(done.len()..) {
            Some(rest) if all.starts_with(&done) => rest.to_string(),
            // The decoder rewrote the already emitted context; give the rest of the window's text.
            _ => all.chars().skip(done.chars().count()).collect(),
        })
    }

    /// The new, non-empty text after the context window's (`None` while the new ids' text does not
    /// extend the context's).
    fn pending(&self) -> Result<Option<String>, TokenizerError> {
        let (done, all) = self.decode_window()?;
        Ok(if all.len() > done.len() && all.starts_with(&done) {
            all.get(done.len()..).map(str::to_string)
        } else {
            None
        })
    }

    /// Decodes of `ids[prefix..emitted]` and `ids[prefix..]`.
    fn decode_window(&self) -> Result<(String, String), TokenizerError> {
        let done = self
            .tokenizer
            .decode(&self.ids[self.prefix..self.emitted])?;
        let all = self.tokenizer.decode(&self.ids[self.prefix..])?;
        Ok((done, all))
    }
}
