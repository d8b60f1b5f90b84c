//! What a Redis command is, from its first words: its upper-case name (with the subcommand of
//! container commands such as `CLIENT` or `CONFIG`), its first key, and the commands that change
//! how the server replies (pub/sub, `MONITOR`, `CLIENT REPLY`, `RESET`).

/// Commands whose second word is a subcommand (`CLIENT SETNAME`, `CONFIG GET`).
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY",
    "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands whose first argument is a key (from the key specs of Redis 7's `COMMAND INFO`).
const KEY_FIRST: &[&str] = &[
    // strings and generic
    "GET",
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "SETRANGE",
    "APPEND",
    "STRLEN",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "MGET",
    "MSET",
    "MSETNX",
    "DEL",
    "UNLINK",
    "EXISTS",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "EXPIRETIME",
    "PEXPIRETIME",
    "TTL",
    "PTTL",
    "PERSIST",
    "TYPE",
    "RENAME",
    "RENAMENX",
    "MOVE",
    "COPY",
    "DUMP",
    "RESTORE",
    "TOUCH",
    "SORT",
    "SORT_RO",
    "WATCH",
    "LCS",
    "SUBSTR",
    // lists
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LLEN",
    "LRANGE",
    "LINDEX",
    "LSET",
    "LREM",
    "LTRIM",
    "LINSERT",
    "LPOS",
    "LMOVE",
    "BLMOVE",
    "RPOPLPUSH",
    "BRPOPLPUSH",
    "BLPOP",
    "BRPOP",
    // sets
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "SPOP",
    "SRANDMEMBER",
    "SMOVE",
    "SINTER",
    "SINTERSTORE",
    "SUNION",
    "SUNIONSTORE",
    "SDIFF",
    "SDIFFSTORE",
    "SSCAN",
    // hashes
    "HSET",
    "HSETNX",
    "HGET",
    "HMSET",
    "HMGET",
    "HDEL",
    "HLEN",
    "HSTRLEN",
    "HKEYS",
    "HVALS",
    "HGETALL",
    "HEXISTS",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HRANDFIELD",
    "HSCAN",
    "HEXPIRE",
    "HPEXPIRE",
    "HEXPIREAT",
    "HPEXPIREAT",
    "HTTL",
    "HPTTL",
    "HEXPIRETIME",
    "HPEXPIRETIME",
    "HPERSIST",
    "HGETDEL",
    "HGETEX",
    "HSETEX",
    // sorted sets
    "ZADD",
    "ZREM",
    "ZCARD",
    "ZCOUNT",
    "ZSCORE",
    "ZMSCORE",
    "ZINCRBY",
    "ZRANGE",
    "ZRANGESTORE",
    "ZRANGEBYSCORE",
    "ZREVRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGEBYLEX",
    "ZREVRANGE",
    "ZRANK",
    "ZREVRANK",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYLEX",
    "ZLEXCOUNT",
    "ZPOPMIN",
    "ZPOPMAX",
    "BZPOPMIN",
    "BZPOPMAX",
    "ZRANDMEMBER",
    "ZSCAN",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "ZDIFFSTORE",
    // bitmaps, HyperLogLog, geo
    "SETBIT",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "BITFIELD",
    "BITFIELD_RO",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUS_RO",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    // streams
    "XADD",
    "XLEN",
    "XRANGE",
    "XREVRANGE",
    "XDEL",
    "XTRIM",
    "XACK",
    "XCLAIM",
    "XAUTOCLAIM",
    "XPENDING",
    "XSETID",
];

/// Common commands that take no key (or whose keys are found by `key_index`).
const OTHERS: &[&str] = &[
    "PING",
    "ECHO",
    "AUTH",
    "HELLO",
    "SELECT",
    "QUIT",
    "RESET",
    "INFO",
    "DBSIZE",
    "FLUSHDB",
    "FLUSHALL",
    "SAVE",
    "BGSAVE",
    "BGREWRITEAOF",
    "LASTSAVE",
    "TIME",
    "MULTI",
    "EXEC",
    "DISCARD",
    "UNWATCH",
    "KEYS",
    "SCAN",
    "RANDOMKEY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SSUBSCRIBE",
    "SUNSUBSCRIBE",
    "PUBLISH",
    "SPUBLISH",
    "MONITOR",
    "SHUTDOWN",
    "SWAPDB",
    "WAIT",
    "WAITAOF",
    "ROLE",
    "REPLICAOF",
    "SLAVEOF",
    "SYNC",
    "PSYNC",
    "FAILOVER",
    "READONLY",
    "READWRITE",
    "ASKING",
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
    "ZUNION",
    "ZINTER",
    "ZDIFF",
    "SINTERCARD",
    "ZINTERCARD",
    "LMPOP",
    "ZMPOP",
    "BLMPOP",
    "BZMPOP",
    "XREAD",
    "XREADGROUP",
    "BITOP",
    "MIGRATE",
];

/// Commands whose arguments carry credentials: never copied, even with `include_args`.
const SECRET_ARGS: &[&str] = &["AUTH", "HELLO", "MIGRATE", "ACL SETUSER", "CONFIG SET"];

/// Longest command name kept.
const MAX_NAME: usize = 64;

/// Which pub/sub family a command or a confirmation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSub {
    Channel,
    Pattern,
    Shard,
}

/// Commands that change what the server sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// `(P|S)SUBSCRIBE` with this many channels: one confirmation each.
    Subscribe(PubSub, usize),
    /// `(P|S)UNSUBSCRIBE` with this many channels (0: all, one confirmation per channel
    /// dropped, or one when there were none).
    Unsubscribe(PubSub, usize),
    Monitor,
    Reset,
    /// `CLIENT REPLY OFF|SKIP|ON`.
    ReplyOff,
    ReplySkip,
    ReplyOn,
}

/// A command as reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub key: Option<String>,
    /// The arguments after the name, when `include_args` asks for them.
    pub args: Option<Vec<String>>,
    /// Words in the command, name included.
    pub argc: i64,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn upper(b: &[u8]) -> String {
    let mut s = text(&b[..b.len().min(MAX_NAME)]);
    s.make_ascii_uppercase();
    s
}

/// The command in `items` (its first words; `argc` words in all).
pub fn describe(items: &[Vec<u8>], argc: i64, include_args: bool) -> (Command, Effect) {
    let Some(first) = items.first() else {
        return (Command::default(), Effect::None);
    };
    let base = upper(first);
    let sub = items.get(1).filter(|s| {
        CONTAINERS.contains(&base.as_str())
            && !s.is_empty()
            && s.len() <= 32
            && s.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    });
    let name = match sub {
        Some(s) => format!("{base} {}", upper(s)),
        None => base.clone(),
    };
    let key_at = key_index(&name, items);
    let key = key_at.and_then(|i| items.get(i)).map(|k| text(k));
    let effect = effect(&name, items, argc);
    let skip = if sub.is_some() { 2 } else { 1 };
    let args = (include_args && !SECRET_ARGS.contains(&name.as_str()))
        .then(|| items.iter().skip(skip).map(|a| text(a)).collect());
    (
        Command {
            name,
            key,
            args,
            argc,
        },
        effect,
    )
}

/// Whether `word` names a command Redis has (case aside): how an inline command is told from
/// other text when a capture starts mid-connection.
pub fn is_known(word: &[u8]) -> bool {
    if word.is_empty() || word.len() > 20 {
        return false;
    }
    let name = upper(word);
    CONTAINERS.contains(&name.as_str())
        || KEY_FIRST.contains(&name.as_str())
        || OTHERS.contains(&name.as_str())
}

/// Where the first key is among the words (0 is the name), for the commands known to take one.
fn key_index(name: &str, items: &[Vec<u8>]) -> Option<usize> {
    let numkeys_at = |i: usize| -> Option<usize> {
        let n: u64 = std::str::from_utf8(items.get(i)?).ok()?.parse().ok()?;
        (n > 0).then_some(i + 1)
    };
    match name {
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => numkeys_at(2),
        "ZUNION" | "ZINTER" | "ZDIFF" | "SINTERCARD" | "ZINTERCARD" | "LMPOP" | "ZMPOP" => {
            numkeys_at(1)
        }
        "BLMPOP" | "BZMPOP" => numkeys_at(2),
        "XREAD" | "XREADGROUP" => items
            .iter()
            .position(|w| w.eq_ignore_ascii_case(b"STREAMS"))
            .map(|i| i + 1),
        "BITOP" => Some(2),
        "MIGRATE" => match items.get(3) {
            Some(k) if k.is_empty() => items
                .iter()
                .position(|w| w.eq_ignore_ascii_case(b"KEYS"))
                .map(|i| i + 1),
            _ => Some(3),
        },
        "OBJECT ENCODING"
        | "OBJECT FREQ"
        | "OBJECT IDLETIME"
        | "OBJECT REFCOUNT"
        | "MEMORY USAGE"
        | "XINFO STREAM"
        | "XINFO GROUPS"
        | "XINFO CONSUMERS"
        | "XGROUP CREATE"
        | "XGROUP SETID"
        | "XGROUP DESTROY"
        | "XGROUP CREATECONSUMER"
        | "XGROUP DELCONSUMER"
        | "DEBUG OBJECT" => Some(2),
        n if KEY_FIRST.contains(&n) => Some(1),
        _ => None,
    }
}

fn effect(name: &str, items: &[Vec<u8>], argc: i64) -> Effect {
    let channels = (argc.max(1) - 1) as usize;
    match name {
        "SUBSCRIBE" => Effect::Subscribe(PubSub::Channel, channels),
        "PSUBSCRIBE" => Effect::Subscribe(PubSub::Pattern, channels),
        "SSUBSCRIBE" => Effect::Subscribe(PubSub::Shard, channels),
        "UNSUBSCRIBE" => Effect::Unsubscribe(PubSub::Channel, channels),
        "PUNSUBSCRIBE" => Effect::Unsubscribe(PubSub::Pattern, channels),
        "SUNSUBSCRIBE" => Effect::Unsubscribe(PubSub::Shard, channels),
        "MONITOR" => Effect::Monitor,
        "RESET" => Effect::Reset,
        "CLIENT REPLY" => match items.get(2).map(|w| upper(w)).as_deref() {
            Some("OFF") => Effect::ReplyOff,
            Some("SKIP") => Effect::ReplySkip,
            Some("ON") => Effect::ReplyOn,
            _ => Effect::None,
        },
        _ => Effect::None,
    }
}

/// The pub/sub message kinds a server sends: `(family, true)` for a confirmation of
/// (un)subscribing, `(family, false)` for a published message.
pub fn pubsub_kind(word: &[u8]) -> Option<(PubSub, Option<bool>)> {
    let lower = word.to_ascii_lowercase();
    Some(match lower.as_slice() {
        b"subscribe" => (PubSub::Channel, Some(true)),
        b"psubscribe" => (PubSub::Pattern, Some(true)),
        b"ssubscribe" => (PubSub::Shard, Some(true)),
        b"unsubscribe" => (PubSub::Channel, Some(false)),
        b"punsubscribe" => (PubSub::Pattern, Some(false)),
        b"sunsubscribe" => (PubSub::Shard, Some(false)),
        b"message" => (PubSub::Channel, None),
        b"pmessage" => (PubSub::Pattern, None),
        b"smessage" => (PubSub::Shard, None),
        _ => return None,
    })
}
