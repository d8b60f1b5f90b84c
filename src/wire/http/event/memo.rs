//! A connection's memo of the header values its transactions repeat (the Host, the
//! response's Content-Type) and what an event takes from them, so that each event does not
//! split, lower and escape-check them again.

use super::{has_upper, mime_part, needs_escape, split_host, Transaction};

/// A slice of a header value (offsets into it) that needs no lowering or escaping.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Part {
    start: u32,
    end: u32,
}

impl Part {
    /// `sub` (a slice of `whole`) as offsets, when it is plain: no capitals, nothing to escape.
    fn of(whole: &str, sub: &str) -> Option<Part> {
        let b = sub.as_bytes();
        if has_upper(b) || needs_escape(b) {
            return None;
        }
        let start = sub.as_ptr() as usize - whole.as_ptr() as usize;
        Some(Part {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(start + sub.len()).ok()?,
        })
    }

    pub(super) fn of_text<'a>(&self, whole: &'a str) -> &'a str {
        &whole[self.start as usize..self.end as usize]
    }
}

/// `url.domain` and `url.port` of a Host (a non-empty, plain domain only) and `mime_type` of
/// a response's Content-Type, when the connection's `Memo` had them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seen {
    pub(super) host: Option<(Part, Option<u16>)>,
    pub(super) resp_mime: Option<Part>,
}

/// The last Host and response Content-Type of a connection and what the event takes from
/// them: a keep-alive connection repeats both on nearly every transaction, and a compare is
/// a fraction of splitting, lowering and escape-checking them again (about 350 instructions
/// a transaction). What does not fit a `Part` (capitals, escapes, an empty domain) is left
/// to the event, as before.
#[derive(Default)]
pub struct Memo {
    host: Option<(compact_str::CompactString, (Part, Option<u16>))>,
    resp_type: Option<(compact_str::CompactString, Part)>,
}

impl Memo {
    pub fn seen(&mut self, t: &Transaction) -> Seen {
        let host = t.request.as_ref().and_then(|r| r.host.as_ref());
        let resp_type = t.response.as_ref().and_then(|r| r.content_type.as_ref());
        Seen {
            host: host.and_then(|h| match &self.host {
                Some((last, parts)) if last == h => Some(*parts),
                _ => {
                    let (domain, port) = split_host(h);
                    let parts = (!domain.is_empty())
                        .then(|| Part::of(h, domain))
                        .flatten()
                        .map(|d| (d, port));
                    self.host = parts.map(|p| (h.clone(), p));
                    parts
                }
            }),
            resp_mime: resp_type.and_then(|ct| match &self.resp_type {
                Some((last, part)) if last == ct => Some(*part),
                _ => {
                    let part = Part::of(ct, mime_part(ct));
                    self.resp_type = part.map(|p| (ct.clone(), p));
                    part
                }
            }),
        }
    }
}
