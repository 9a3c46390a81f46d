//! The Lua scripts of docs/CLUSTER.md ("The scripts"). Redis runs a script
//! to its end before any other command, so each is one atomic step: a
//! post appends and publishes together, a claim reads and sets together,
//! a follow registers and reads the room's tail together.
//!
//! Key names come from [`chatd_core::cluster::keys`]: the scripts get whole
//! keys in `KEYS` where they are known in advance, and the prefixes of
//! the per-node keys (leases, channels) in `ARGV`, derived from `keys::`
//! too, so the names live in one place.
//!
//! Ids are formatted with `string.format('%d', …)`: Lua 5.1's `tostring`
//! would switch to exponent notation past 14 digits.

use chatd_core::Nick;
use chatd_core::cluster::{NodeName, keys};
use chatd_core::ids::RoomName;
use redis::{Cmd, Script};

/// post(room, history size, lines…): the first line's id, after
/// appending the lines (one room's, in order) to the room's stream with
/// consecutive ids, and publishing them to every follower in one message:
/// `{"t":"line","id":…,"prev":…,"line":…}` for one line,
/// `{"t":"lines","first":…,"prev":…,"lines":[…]}` for more. A batch costs
/// Redis one call, one counter step, one tail update and one PUBLISH per
/// follower, not one of each per line. The ids only grow within a batch,
/// so a stream ahead of the counter (restored apart from it) fails the
/// first XADD, before anything is written; Redis refuses a writing script
/// up front when out of memory.
///
/// KEYS: next-id, tails, the room's stream, the room's followers.
/// ARGV: room, history size, channel prefix, then each line's JSON.
const POST: &str = r#"
local n = #ARGV - 3
local last = redis.call('INCRBY', KEYS[1], n)
local first = last - n + 1
local prev = string.format('%d', tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
for i = 1, n do
    local sid = string.format('%d', first + i - 1)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], sid .. '-0', 'm', ARGV[3 + i])
end
local sfirst = string.format('%d', first)
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', last))
local envelope
if n == 1 then
    envelope = '{"t":"line","id":' .. sfirst .. ',"prev":' .. prev .. ',"line":' .. ARGV[4] .. '}'
else
    envelope = '{"t":"lines","first":' .. sfirst .. ',"prev":' .. prev .. ',"lines":['
        .. table.concat(ARGV, ',', 4) .. ']}'
end
for _, node in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    redis.call('PUBLISH', ARGV[3] .. node, envelope)
end
return first
"#;

/// whisper(nick, message): the whisper's id after publishing
/// `{"t":"whisper","id":…,"whisper":…}` to the node holding the nickname,
/// 0 when no live node holds it, or -1 when its node is not listening
/// (cut off from Redis: pub/sub dropped it, so it was not delivered).
///
/// KEYS: the nickname's key, next-id. ARGV: lease prefix, channel prefix,
/// whisper JSON.
const WHISPER: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder then return 0 end
if redis.call('EXISTS', ARGV[1] .. holder) == 0 then return 0 end
local id = redis.call('INCR', KEYS[2])
local heard = redis.call('PUBLISH', ARGV[2] .. holder,
    '{"t":"whisper","id":' .. string.format('%d', id) .. ',"whisper":' .. ARGV[3] .. '}')
if heard == 0 then return -1 end
return id
"#;

/// order(nick, message): 1 after publishing `{"t":"order","order":…}` to
/// the node holding the nickname, 0 when no live node holds it, -1 when
/// its node is not listening (cut off from Redis: pub/sub would drop it).
///
/// KEYS: the nickname's key. ARGV: lease prefix, channel prefix, order
/// JSON.
const ORDER: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder then return 0 end
if redis.call('EXISTS', ARGV[1] .. holder) == 0 then return 0 end
if redis.call('PUBLISH', ARGV[2] .. holder, '{"t":"order","order":' .. ARGV[3] .. '}') == 0 then
    return -1
end
return 1
"#;

/// claim(nick, node): 1 when granted (free, already ours, or held by a node
/// whose lease expired), 0 when another live node holds it.
///
/// KEYS: the nickname's key. ARGV: node, lease prefix.
const CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] or redis.call('EXISTS', ARGV[2] .. holder) == 0 then
    redis.call('SET', KEYS[1], ARGV[1])
    return 1
end
return 0
"#;

/// release(nick, node): deletes the key if this node holds it.
///
/// KEYS: the nickname's key. ARGV: node.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"#;

/// announce(message, node): publishes to every node in the node set but
/// this one.
///
/// KEYS: nodes. ARGV: node, channel prefix, envelope JSON.
const ANNOUNCE: &str = r#"
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if node ~= ARGV[1] then
        redis.call('PUBLISH', ARGV[2] .. node, ARGV[3])
    end
end
return 0
"#;

/// follow(room, node): registers the node as a follower and returns the
/// room's tail (0 if none) in the same step, so every line after the tail
/// is published to the node and every line up to it is in the stream.
///
/// KEYS: the room's followers, tails. ARGV: node, room.
const FOLLOW: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
return tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
"#;

/// settle(room, change, …writes): merges one change into the room's
/// settings (a JSON object in the settings hash) and publishes
/// `{"t":"settings","settings":…,"change":…}` to every node in the node
/// set, this one too: every node applies the changes in the order this
/// script ran them. Each write sets one field, or one entry of a map
/// field, and a `null` removes it (a map left empty goes too), so
/// concurrent changes of different settings, or of different bans, all
/// hold; a reset removes every field first. Address bans that ended by
/// `now` (Unix ms) are dropped on the way, so ended bans do not pile up.
/// The merge is [`chatd_core::cluster::RoomSettings::merged`]'s.
///
/// A change made from a field's value (a hand-off of ownership from its
/// owner) is made only if the field still holds it; else the script
/// answers 0 and publishes nothing.
///
/// KEYS: settings, nodes. ARGV: room, change JSON, channel prefix, reset
/// (`1` or empty), now, condition field (or empty), its value JSON, then
/// (field, entry or empty, value JSON) for each write.
const SETTLE: &str = r#"
local settings = {}
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then settings = cjson.decode(current) end
if ARGV[6] ~= '' then
    local expected = cjson.decode(ARGV[7])
    if expected == cjson.null then expected = nil end
    if settings[ARGV[6]] ~= expected then return 0 end
end
if ARGV[4] == '1' then settings = {} end
for i = 8, #ARGV, 3 do
    local field, entry, value = ARGV[i], ARGV[i + 1], cjson.decode(ARGV[i + 2])
    if value == cjson.null then value = nil end
    if entry == '' then
        settings[field] = value
    else
        local entries = settings[field]
        if type(entries) ~= 'table' then entries = {} end
        entries[entry] = value
        if next(entries) == nil then settings[field] = nil else settings[field] = entries end
    end
end
if type(settings.bans) == 'table' then
    local now = tonumber(ARGV[5])
    for address, ban in pairs(settings.bans) do
        if type(ban) == 'table' and type(ban.until_ms) == 'number' and ban.until_ms <= now then
            settings.bans[address] = nil
        end
    end
    if next(settings.bans) == nil then settings.bans = nil end
end
local encoded = '{}'
if next(settings) == nil then
    redis.call('HDEL', KEYS[1], ARGV[1])
else
    encoded = cjson.encode(settings)
    redis.call('HSET', KEYS[1], ARGV[1], encoded)
end
local envelope = '{"t":"settings","settings":' .. encoded .. ',"change":' .. ARGV[2] .. '}'
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('PUBLISH', ARGV[3] .. node, envelope)
end
return 1
"#;

/// renew(token, ms): extends the lease if it is still ours; 0 when it
/// expired or another node holds it.
///
/// KEYS: the lease. ARGV: token, lease in milliseconds.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
"#;

/// gone(node): a node whose lease is gone leaves the node set and every
/// followers set. 1 for the caller that removed it, 0 if it was removed
/// already or its lease is back (it reconnected meanwhile).
///
/// KEYS: nodes, the node's lease. ARGV: node, followers key pattern.
/// The followers keys are found with KEYS inside the script (standalone
/// Redis only, as docs/CLUSTER.md assumes: one Redis) so a node that
/// comes back cannot re-follow between the two steps.
const GONE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, key in ipairs(redis.call('KEYS', ARGV[2])) do
    redis.call('SREM', key, ARGV[1])
end
return 1
"#;

/// forget(node): deletes every nickname key naming this node. Run when a
/// process takes its lease for the first time: keys left by an earlier
/// process of the same name (killed, so it never released them) name no
/// user any more.
///
/// KEYS: none. ARGV: node, nickname key pattern.
const FORGET: &str = r#"
local forgotten = 0
for _, key in ipairs(redis.call('KEYS', ARGV[2])) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
        forgotten = forgotten + 1
    end
end
return forgotten
"#;

/// leave(token, node): a graceful stop. Deletes the lease if ours, leaves
/// the node set and every followers set (nothing is published to a
/// stopped node).
///
/// KEYS: the lease, nodes. ARGV: token, node, followers key pattern.
const LEAVE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[2])
for _, key in ipairs(redis.call('KEYS', ARGV[3])) do
    redis.call('SREM', key, ARGV[2])
end
return 0
"#;

/// The scripts, hashed once; commands built for pipelines as EVALSHA
/// (loaded on every new connection, see [`Scripts::load`]).
pub(crate) struct Scripts {
    post: Script,
    whisper: Script,
    order: Script,
    claim: Script,
    release: Script,
    announce: Script,
    follow: Script,
    settle: Script,
    renew: Script,
    gone: Script,
    leave: Script,
    forget: Script,
    /// `chatd:to:` — a node's channel is this plus its name.
    channel_prefix: String,
    /// `chatd:node:` — a node's lease is this plus its name.
    lease_prefix: String,
    /// `chatd:followers:*` — every followers set.
    followers_pattern: String,
    /// `chatd:nick:*` — every nickname's holder.
    nicks_pattern: String,
}

/// `full` without `suffix` at its end: the fixed part of a key name that
/// [`keys`] builds around a name.
fn prefix_of(full: String, suffix: &str) -> String {
    match full.strip_suffix(suffix) {
        Some(prefix) => prefix.to_owned(),
        // keys:: puts names at the end; if that changed, this is a bug.
        None => panic!("key {full:?} does not end with {suffix:?}"),
    }
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let sample = NodeName::parse("x").expect("a valid node name");
        let room = RoomName::general();
        let sample_nick = Nick::parse("x").expect("a valid nickname");
        Self {
            post: Script::new(POST),
            whisper: Script::new(WHISPER),
            order: Script::new(ORDER),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            announce: Script::new(ANNOUNCE),
            follow: Script::new(FOLLOW),
            settle: Script::new(SETTLE),
            renew: Script::new(RENEW),
            gone: Script::new(GONE),
            leave: Script::new(LEAVE),
            forget: Script::new(FORGET),
            channel_prefix: prefix_of(keys::channel(&sample), sample.as_str()),
            lease_prefix: prefix_of(keys::lease(&sample), sample.as_str()),
            followers_pattern: prefix_of(keys::followers(&room), room.as_str()) + "*",
            nicks_pattern: prefix_of(keys::nick(&sample_nick), sample_nick.as_str()) + "*",
        }
    }

    /// Loads every script into Redis's script cache, so the EVALSHAs of
    /// a pipeline find them (a restarted Redis has forgotten them; every
    /// new connection loads them again).
    pub(crate) fn load(&self, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        for script in self.all() {
            script.load(conn)?;
        }
        Ok(())
    }

    fn all(&self) -> [&Script; 12] {
        [
            &self.settle,
            &self.post,
            &self.whisper,
            &self.order,
            &self.claim,
            &self.release,
            &self.announce,
            &self.follow,
            &self.renew,
            &self.gone,
            &self.leave,
            &self.forget,
        ]
    }

    /// See [`POST`]: `lines` are one room's, in order, at least one.
    pub(crate) fn post(&self, room: &RoomName, lines: &[String], history_size: usize) -> Cmd {
        let size = history_size.max(1).to_string();
        let mut args = vec![room.as_str(), &size, &self.channel_prefix];
        args.extend(lines.iter().map(String::as_str));
        evalsha(
            &self.post,
            &[
                keys::NEXT_ID,
                keys::TAILS,
                &keys::room(room),
                &keys::followers(room),
            ],
            &args,
        )
    }

    pub(crate) fn forget(&self, node: &NodeName) -> Cmd {
        evalsha(&self.forget, &[], &[node.as_str(), &self.nicks_pattern])
    }

    pub(crate) fn whisper(&self, to: &Nick, whisper_json: &str) -> Cmd {
        evalsha(
            &self.whisper,
            &[&keys::nick(to), keys::NEXT_ID],
            &[&self.lease_prefix, &self.channel_prefix, whisper_json],
        )
    }

    pub(crate) fn order(&self, target: &Nick, order_json: &str) -> Cmd {
        evalsha(
            &self.order,
            &[&keys::nick(target)],
            &[&self.lease_prefix, &self.channel_prefix, order_json],
        )
    }

    pub(crate) fn claim(&self, nick: &Nick, node: &NodeName) -> Cmd {
        evalsha(
            &self.claim,
            &[&keys::nick(nick)],
            &[node.as_str(), &self.lease_prefix],
        )
    }

    pub(crate) fn release(&self, nick: &Nick, node: &NodeName) -> Cmd {
        evalsha(&self.release, &[&keys::nick(nick)], &[node.as_str()])
    }

    pub(crate) fn announce(&self, node: &NodeName, envelope_json: &str) -> Cmd {
        evalsha(
            &self.announce,
            &[keys::NODES],
            &[node.as_str(), &self.channel_prefix, envelope_json],
        )
    }

    pub(crate) fn follow(&self, room: &RoomName, node: &NodeName) -> Cmd {
        evalsha(
            &self.follow,
            &[&keys::followers(room), keys::TAILS],
            &[node.as_str(), room.as_str()],
        )
    }

    /// See [`SETTLE`]: `condition` as (field, value JSON), `writes` as
    /// (field, entry or empty, value JSON).
    pub(crate) fn settle(
        &self,
        room: &RoomName,
        change: &str,
        reset: bool,
        now_ms: u64,
        condition: Option<(&str, String)>,
        writes: &[(&str, &str, String)],
    ) -> Cmd {
        let now = now_ms.to_string();
        let (field, value) = condition.unwrap_or(("", String::new()));
        let mut args = vec![
            room.as_str(),
            change,
            &self.channel_prefix,
            if reset { "1" } else { "" },
            &now,
            field,
            &value,
        ];
        for (field, entry, value) in writes {
            args.extend([*field, *entry, value.as_str()]);
        }
        evalsha(&self.settle, &[keys::SETTINGS, keys::NODES], &args)
    }

    pub(crate) fn renew(&self, node: &NodeName, token: &str, lease_ms: u64) -> Cmd {
        evalsha(
            &self.renew,
            &[&keys::lease(node)],
            &[token, &lease_ms.to_string()],
        )
    }

    pub(crate) fn gone(&self, node: &NodeName) -> Cmd {
        evalsha(
            &self.gone,
            &[keys::NODES, &keys::lease(node)],
            &[node.as_str(), &self.followers_pattern],
        )
    }

    pub(crate) fn leave(&self, node: &NodeName, token: &str) -> Cmd {
        evalsha(
            &self.leave,
            &[&keys::lease(node), keys::NODES],
            &[token, node.as_str(), &self.followers_pattern],
        )
    }
}

/// `EVALSHA sha numkeys keys… args…`, for a pipeline.
fn evalsha(script: &Script, keys: &[&str], args: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_come_from_the_core_key_names() {
        let scripts = Scripts::new();
        assert_eq!(scripts.channel_prefix, "chatd:to:");
        assert_eq!(scripts.lease_prefix, "chatd:node:");
        assert_eq!(scripts.followers_pattern, "chatd:followers:*");
    }
}
