//! The event fields the SQL decoders (PostgreSQL, MySQL) write alike: ECS's `db` object
//! (system, database, user, redacted statement, operation) and the tags of a transaction seen
//! through a gap or with its statement cut. Each decoder writes its own object beside them.

use super::out::Fields;

/// ECS `db`: what ran, where and as whom.
pub struct Db<'a> {
    pub system: &'a str,
    pub name: Option<&'a str>,
    pub user: Option<&'a str>,
    pub statement: Option<&'a str>,
    pub operation: Option<&'a str>,
}

impl Db<'_> {
    pub fn write<F: Fields>(&self, f: &mut F) {
        f.open("db");
        f.word("system", self.system);
        if let Some(d) = self.name {
            f.str("name", d);
        }
        if let Some(u) = self.user {
            f.str("user", u);
        }
        if let Some(s) = self.statement {
            f.str("statement", s);
        }
        if let Some(op) = self.operation {
            f.str("operation", op);
        }
        f.close();
    }
}

/// `tags`: `tcp_gap` when bytes were lost, `truncated` (the decoder's own tag) when the
/// statement was cut at its size limit.
pub fn write_tags<F: Fields>(f: &mut F, gap: bool, truncated: bool, truncated_tag: &'static str) {
    match (gap, truncated) {
        (true, true) => f.strs("tags", &["tcp_gap", truncated_tag]),
        (true, false) => f.strs("tags", &["tcp_gap"]),
        (false, true) => f.strs("tags", &[truncated_tag]),
        (false, false) => {}
    }
}
