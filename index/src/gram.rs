//! Case-insensitive substring search with positional character grams.
//!
//! Owl's `keyword`, `url`, `file` and `function` filters are ILIKE `%needle%` matches, and they must
//! work for text without word boundaries (`登录失败` inside `用户登录失败：用户名或密码错误`) and inside
//! words (`nection` inside `connection`). A word tokenizer can do neither.
//!
//! Each text is case-folded character by character ([`fold`]) and indexed as one token per character
//! position `p`: the up to [`GRAM`] characters starting at `p` (the last two positions get shorter
//! tokens). Positions are indexed, so a needle is matched exactly, with no verification pass over
//! stored documents:
//!
//! - a needle of exactly [`GRAM`] characters is one term;
//! - a shorter needle is a prefix of the token at every position where it occurs, so it is a term
//!   range `[needle, needle + 0xFF)` over the dictionary (UTF-8 never contains the byte 0xFF);
//! - a longer needle is a phrase of its grams at offsets 0, 3, 6, ... and `len - 3`: every character
//!   of the needle is covered by a gram at its own offset, so a phrase match at position `p` means the
//!   folded text equals the needle from `p` on.
//!
//! Considered and rejected: plain trigrams plus a verification pass over stored text (exact counts
//! would load every candidate document), 1-to-3-gram tokens at each position (three times the
//! postings for the same answers), and tantivy's `NgramTokenizer` (it lowercases nothing and would
//! need the same position trick anyway).
//!
//! Folding is per character (`char::to_lowercase`), so `fold(a + b) == fold(a) + fold(b)`: a
//! substring of the original is a substring of the folded text, which is what makes the match exact
//! (a whole-string lowercase would fold a final Greek sigma differently by context). Texts are
//! indexed up to [`MAX_INDEXED_CHARS`] folded characters; the in-memory tail applies the same limit
//! through [`fold_indexed`] so both paths agree.

use std::borrow::Cow;
use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{BooleanQuery, InvertedIndexRangeQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Characters per token.
pub(crate) const GRAM: usize = 3;

/// Name the gram tokenizer is registered under in every partition.
pub(crate) const TOKENIZER_NAME: &str = "owl_gram3";

/// Longest prefix of a text, in folded characters, that substring search sees. Longer texts are
/// stored whole but only this much is searchable: it bounds the postings of one huge message.
pub(crate) const MAX_INDEXED_CHARS: usize = 16 * 1024;

/// Case-folds a text one character at a time.
pub(crate) fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(text.to_ascii_lowercase());
        }
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().flat_map(char::to_lowercase).collect())
}

/// The folded text as the index sees it: folded and cut at [`MAX_INDEXED_CHARS`] characters.
pub(crate) fn fold_indexed(text: &str) -> Cow<'_, str> {
    let folded = fold(text);
    match folded.char_indices().nth(MAX_INDEXED_CHARS) {
        None => folded,
        Some((cut, _)) => Cow::Owned(folded[..cut].to_string()),
    }
}

/// A needle prepared once per request: folded, with its character count.
#[derive(Debug, Clone)]
pub(crate) struct Needle {
    folded: String,
    chars: usize,
}

impl Needle {
    /// Prepares a needle; `None` for an empty one (which filters nothing).
    pub(crate) fn new(raw: &str) -> Option<Needle> {
        if raw.is_empty() {
            return None;
        }
        let folded = fold(raw).into_owned();
        let chars = folded.chars().count();
        Some(Needle { folded, chars })
    }

    /// Whether `haystack` contains the needle, by the same rules as the index.
    pub(crate) fn is_in(&self, haystack: &str) -> bool {
        fold_indexed(haystack).contains(self.folded.as_str())
    }

    /// A query matching documents whose `field` (indexed with the gram tokenizer) contains the
    /// needle.
    pub(crate) fn query(&self, field: Field) -> Box<dyn Query> {
        let needle = self.folded.as_str();
        if self.chars < GRAM {
            let lower = Term::from_field_text(field, needle);
            let mut upper_bytes = needle.as_bytes().to_vec();
            upper_bytes.push(0xFF);
            // The range weight only compares serialized value bytes, so a bytes term can carry the
            // 0xFF sentinel that no `str` can.
            let upper = Term::from_field_bytes(field, &upper_bytes);
            return Box::new(InvertedIndexRangeQuery::new(
                Bound::Included(lower),
                Bound::Excluded(upper),
            ));
        }
        let starts: Vec<usize> = needle
            .char_indices()
            .map(|(i, _)| i)
            .chain([needle.len()])
            .collect();
        let gram_at =
            |offset: usize| Term::from_field_text(field, &needle[starts[offset]..starts[offset + GRAM]]);
        if self.chars == GRAM {
            return Box::new(TermQuery::new(gram_at(0), IndexRecordOption::Basic));
        }
        let mut offsets: Vec<usize> = (0..=self.chars - GRAM).step_by(GRAM).collect();
        if offsets.last() != Some(&(self.chars - GRAM)) {
            offsets.push(self.chars - GRAM);
        }
        let terms = offsets
            .into_iter()
            .map(|offset| (offset, gram_at(offset)))
            .collect();
        Box::new(PhraseQuery::new_with_offset(terms))
    }
}

/// A query matching documents where any of `fields` contains the needle.
pub(crate) fn any_field_query(needle: &Needle, fields: &[Field]) -> Box<dyn Query> {
    if let [field] = fields {
        return needle.query(*field);
    }
    Box::new(BooleanQuery::new(
        fields.iter().map(|&f| (Occur::Should, needle.query(f))).collect(),
    ))
}

/// Tokenizer emitting, for each character position of the folded text, the gram starting there.
#[derive(Debug, Clone, Default)]
pub(crate) struct GramTokenizer;

/// Token stream of [`GramTokenizer`].
pub(crate) struct GramTokenStream {
    text: String,
    /// Byte offset of each character, plus the text length at the end.
    starts: Vec<usize>,
    next: usize,
    token: Token,
}

impl Tokenizer for GramTokenizer {
    type TokenStream<'a> = GramTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> GramTokenStream {
        let text = fold_indexed(text).into_owned();
        let starts = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        GramTokenStream {
            text,
            starts,
            next: 0,
            token: Token::default(),
        }
    }
}

impl TokenStream for GramTokenStream {
    fn advance(&mut self) -> bool {
        let chars = self.starts.len() - 1;
        if self.next >= chars {
            return false;
        }
        let from = self.starts[self.next];
        let to = self.starts[(self.next + GRAM).min(chars)];
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.next;
        self.token.position_length = 1;
        self.next += 1;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(usize, String)> {
        let mut tokenizer = GramTokenizer;
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push((token.position, token.text.clone()));
        }
        out
    }

    #[test]
    fn emits_one_gram_per_character_position() {
        assert_eq!(
            tokens("AbCd"),
            vec![
                (0, "abc".into()),
                (1, "bcd".into()),
                (2, "cd".into()),
                (3, "d".into())
            ]
        );
        assert_eq!(
            tokens("登录失败"),
            vec![
                (0, "登录失".into()),
                (1, "录失败".into()),
                (2, "失败".into()),
                (3, "败".into())
            ]
        );
        assert!(tokens("").is_empty());
    }

    #[test]
    fn folding_is_per_character() {
        // A whole-string lowercase would give a final sigma here and miss `σα`.
        assert_eq!(fold("ΟΔΟΣ"), "οδοσ");
        assert_eq!(fold("ConNection"), "connection");
        assert!(matches!(fold("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn indexed_text_is_cut_at_the_limit() {
        let long = "x".repeat(MAX_INDEXED_CHARS + 10);
        assert_eq!(fold_indexed(&long).chars().count(), MAX_INDEXED_CHARS);
        assert_eq!(tokens(&long).len(), MAX_INDEXED_CHARS);
    }

    #[test]
    fn needles_match_like_ilike() {
        let needle = Needle::new("NECTION").unwrap();
        assert!(needle.is_in("Database connection failed"));
        assert!(!needle.is_in("Database connect failed"));
        assert!(Needle::new("").is_none());
        assert!(
            Needle::new("登录失败")
                .unwrap()
                .is_in("用户登录失败：用户名或密码错误")
        );
    }
}
