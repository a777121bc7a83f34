#!lua name=tollgate
--[[
Tollgate's fleet-wide state: a Redis Functions library (Redis 7.0+).

Every Envoy replica reaches it through webdis (`POST /` with `FCALL/<function>/0/<arg...>`).
A `tg_sync` whose payload says `"library": "<n>"` with n newer than VERSION is refused with
exactly `{"error":"library_version","version":"<VERSION>"}` and nothing else is read or written:
the filter then loads the library it carries and sends the sync again. An older caller is served
(the library only moves forward during a rolling deploy).
The filter embeds this file (`include_str!`) and loads it itself: when `tg_version` is missing
(`Function not found`, `Library not found`) or answers another version than the one the filter
carries (the `VERSION` line below), it sends `FUNCTION/LOAD/REPLACE/<this file>` and calls again.
Functions persist in the AOF with the data: a restarted Redis has them. Bump VERSION on every
change to this file, so that every replica of a rolling deploy reloads it (a test holds the
file's SHA-256 per VERSION and fails until both are updated).

Every function takes no keys (`numkeys` 0), only arguments, and returns ONE string: a JSON
document. Input that is not what a function expects gets `{"error": "<what>"}`, and nothing is
written: every argument is checked before the first write. Time is Redis's `TIME` (one clock for
the fleet). Money is integer micro-USD. Every call's cost is bounded (see the limits below).

Key layout (all under `tg:`; `{party}` and `{replica}` are hash tags):
  tg:p:{party}      HASH   a party's counters (party: `key:<token>:<generation>` or `team:<id>`):
                           spend (µUSD in the budget window), window_start (unix s),
                           lifetime (µUSD), minute (unix s / 60), requests, tokens (this minute,
                           as leased: granted less released), leased (µUSD leased to all
                           replicas), leased_parallel (slots leased to all replicas)
  tg:l:{party}      HASH   replica -> its lease, JSON {"b":µUSD,"r":requests,"t":tokens,
                           "p":slots,"m":minute}: the sum of what was granted to the replica,
                           less what it spent and released (r and t only in minute m; they
                           count in that minute's requests/tokens already); never sent back
  tg:r:{replica}    SET    parties the replica holds a lease in (what reclaim walks)
  tg:replicas       ZSET   replica -> heartbeat deadline (ms): now + ttl at its last call
  tg:seq:{replica}  HASH   seq (last applied tg_sync), reply (its JSON reply), reclaimed (set
                           when reclaim took the replica's leases, until its next applied
                           tg_sync); expires one day after the replica's last sync or reclaim
                           (kept past its death, so that a late retry is still recognised)
  tg:cooldowns      ZSET   deployment -> cooled down until (ms); expired entries are dropped
  tg:changes        STREAM key changes: token, op (put|block|unblock|delete); MAXLEN ~ 10000
  tg:spend          STREAM one entry per key per sync: k (key hash, "" if none), n (records),
                           r (their JSON texts joined by newlines; version 7 wrote one record
                           and no n); the id is when Redis stored it; about spend_log_keep
                           records kept
  tg:spend:n        STRING how many records tg:spend holds
  tg:spend:i        LIST   `<entry id> <records>` of tg:spend's entries, oldest first (trimming
                           reads it, never the entries)
  tg:k:<token>      HASH   a key: record (its JSON, byte for byte as written), alias (the
                           key_alias it holds, absent if none)
  tg:alias:<alias>  STRING token of the key that holds the alias
  tg:t:<team_id>    STRING a config team's record (JSON, byte for byte)
  tg:responses      STREAM which deployment holds each Responses API response a replica relayed
                           to a deployment serving the API itself: j (JSON {"i": id, "d":
                           deployment, "a": alias, "t": unix s}); MAXLEN ~ 65536
  tg:resp:<id>      HASH   a Responses API response the gateway keeps: alias (the model name
                           it was made for), input (this turn's input items, a JSON array),
                           response (the response object), prev (the response it continued,
                           absent if none); expires ttl seconds after the newest turn of its
                           chain was written

Leases move by deltas only. A replica's lease grows by what tg_sync and tg_admit grant (each
reply says what it granted, never the lease: the replica adds it, so replies that cross on the
way add up in any order) and shrinks only by what the replica reports spent or released (it
releases room locally before the sync leaves). The store never takes back a live replica's lease
otherwise: a tg_sync built before a tg_admit grant and applied after it leaves the grant alone.

Invariants (each function is atomic, so they hold under any interleaving of replicas):
  - spend + leased <= max_budget: budget is granted only from what is left (the only overshoot:
    a request costing more than its estimate, or in-flight reservations of a replica re-leased
    after it was reclaimed while alive, e.g. after a partition longer than its ttl).
  - requests <= rpm, tokens <= tpm for the current minute (Redis's clock), leases included: a
    lease's r and t count in its minute when granted, and leave the count when released in that
    minute; the next minute starts fresh. The tokens a replica reports settled do not count: its
    lease is its count, and a replica whose requests used more tokens than estimated asks for
    the excess in grow.t; what cannot be granted is overshoot, like a request costing more than
    its estimate.
  - leased_parallel <= parallel.
  - tg_sync applies at most once per (replica, seq); a repeated or lower seq returns the stored
    reply of the last applied one.
  - A replica whose heartbeat expired is reclaimed by the next tg_sync of any replica: its budget
    and slots return to the pool; its request and token allowances lapse with their minute (they
    may have been used since its last sync). Its next tg_sync says `reset`.
  - Budget windows (duration, seconds) roll on Redis's clock, aligned to the first window.
  - Seeding writes a config key or team only if absent and never touches tg:p:* (spend survives).
  - A key alias belongs to at most one key.

Functions (as in the store design of issue 14, with these precisions):
  tg_sync(replica, seq, payload): replica is 1-64 of [A-Za-z0-9_-]; seq a decimal integer;
    payload a JSON object's text, then the spend records (below). Replicas send it as the body
    of a webdis PUT, so it crosses webdis unencoded.
    Each entry of payload.parties is {"id", "limits", "spent": µUSD, "tokens": n, "release":
    {"b","r","t","p"}, "grow": {"b","r","t","p"}, "m": minute}, absent counts 0. The first
    draft's `held`, `want` and `requests` are refused (an error, nothing written). Applied in
    this order: spend and lifetime += spent; lease.b (and leased) -= min(lease.b, spent +
    release.b); a lease of another minute than the current one loses its r and t, else if m is
    the current minute release.r and release.t (each capped at the lease's) leave the lease and
    the minute's requests and tokens; release.p (capped) leaves the lease and leased_parallel;
    then each dimension grants min(grow.X, limit - used) (max_budget - spend - leased, rpm -
    requests, tpm - tokens, parallel - leased_parallel; never negative), all of grow.X without
    a limit, added to the lease and the counts. `tokens` is checked and not counted (above).
    Reply party: {"id", "granted": {"b","r","t","p"}, "m": current minute, "reset", "spend",
    "lifetime", "window_start", "leased", "leased_parallel", "requests", "tokens",
    "replicas"}: `reset` is true when this replica had been reclaimed as dead before this call
    (its old leases are gone: it drops what it holds before adding `granted`; what is still
    leased to it here, a tg_admit grant since the reclaim or a lease a bounded reclaim had not
    reached, is only wasted until its leases are reclaimed); `replicas` is how many replicas'
    heartbeats are alive (deadline not passed), at least 1.
    Seed items are key records (with `token`) and team records (with `team_id`), stored byte
    for byte; `seed` is applied in whichever syncs carry it (the first ones of a replica). A
    new replica sends no `changes_after` (or "") and gets the cursor of the latest change.
    `spend_log_keep` (default 100000, at most 1e8): how many spend records tg:spend keeps
    (one tg:spend entry per block below; the oldest go while the rest still hold `keep` records,
    at most 1024 entries a sync). Spend records follow the payload's JSON text, after a newline,
    in blocks of one key's records: a line `<key> <n> <bytes>` (`<key>`: 1-128 of [A-Za-z0-9_-],
    `-` for none; it is what tg_spend_logs filters on), then <bytes> bytes holding n compact JSON
    objects joined by newlines, stored as they are and never parsed, then a newline. A block
    that is not so ends the reading: its records and those after it are counted in the reply's
    `spend_logs_refused` and skipped, not an error (the replica resends a refused sync
    unchanged, and bad records must not hold the rest back). Version 7's form, records as
    objects in the payload's `spend_logs` (`key_hash`, else `api_key`, filtered on; re-encoded by
    cjson), is still taken from older replicas during a rolling deploy. Top-level reply fields besides the design's:
    `changes_lost` (changes after the cursor were trimmed away: drop the key cache);
    `responses` and `responses_cursor`: payload.responses (at most 1024 entries {"i", "d",
    "a", "t"}: responses this replica relayed since its last sync, and where they are held)
    are appended to tg:responses, and the entries after payload.responses_after come back (at
    most 1000; none and the latest entry's id for a replica without a cursor), so every
    replica routes a later turn to the deployment holding the response;
    `reclaimed` (the parties' `reset`).
  tg_admit(replica, parties, estimate): parties is a JSON array of 1 to 16 {"id", "limits",
    "have", "extra"} (the key's party, then its team's; one object is taken as an array of one;
    an id may not repeat; `have`, default 0, at most b: budget of the replica's lease it holds
    for this request, so only b - have is needed from the pool; `extra` {"b", "r", "t"}: lease
    the replica would like on top, for the requests that follow, granted as far as limits leave
    room, and only for limited dimensions); estimate {"b": µUSD, "t": tokens}.
    All or none: if every party has room for exactly this request (not spend >= max_budget,
    spend + leased + b - have <= max_budget,
    leased_parallel + 1 <= parallel, requests + 1 <= rpm, tokens + t <= tpm), each party's
    lease of this replica grows by it, and the reply is {"ok": true, "now_ms", "m", "parties":
    [{"id", "granted": {"b": b - have + extra, "r": 1 + extra, "t": t + extra, "p": 1}, + the party fields of tg_sync's reply but
    `reset`}]}. Else nothing is written and the reply is {"ok": false, "now_ms", "m", "party":
    the index (from 0) of the first party that refused, "refusal": {"kind":
    budget|parallel|requests|tokens (checked in this order), "limit", "used", "reset_s"
    (seconds until the budget window or the minute ends; null for parallel and a budget
    without duration)}, "parties": [the party fields of every party]}. On success a replica
    unknown to tg:replicas gets a heartbeat of the default ttl.
  tg_key_put(token, record, op, expect): record is JSON text, stored as is. The key holds
    `expect.alias` if expect has the field (null: no alias), else the record's `key_alias`.
    `expect.absent: true` refuses a key that exists (a tombstone, `"deleted": true`, does not
    count): {"ok": false, "error": "key_exists"}; a taken alias: {"ok": false, "error":
    "alias_taken", "alias": ...}. op delete with a record stores it as a tombstone (a deleted
    config key stays deleted when replicas seed), with `null` removes the key. Success:
    {"ok": true, "id": "<change id>"}.
  tg_spend_logs(filter): also `after` (a stream id: continue after that entry; `<id>#<n>`: in
    that entry after its first n records). Reply: {"logs": [records, oldest first], "next":
    id, id#n or null}; `next` set when more may match.
  tg_party_get(party, limits): a party's fields as tg_sync's reply has them (its windows rolled
    by `limits`, as tg_sync takes them; nothing written), and `known` (whether Redis has it).
  tg_response_put(id, prev, alias, ttl, record): record (a PUT body) is `<n> <input><response>`:
    this turn's input items (a JSON array's text of n bytes) and the response object's text,
    stored as they are, never parsed. prev is "-" or the response this one continues: the turns of its chain
    (at most 1024 back) expire no sooner than this one. Reply {"ok": true}.
  tg_response_get(id): {"found": false} or {"found": true, "alias", "response": the object,
    "input": the turn's input items}.
  tg_response_chain(id, max_bytes): the conversation that ends with response id, oldest turn
    first: {"found": true, "alias" (the newest turn's), "turns": [{"input", "response"}]};
    {"found": false} when id is not kept; {"found": true, "refused": "missing", "missing": id}
    when a turn it continues has expired or was deleted, "too_large" past max_bytes of inputs
    and responses, "too_long" past 1024 turns.
  tg_response_delete(id): {"deleted": whether it was kept}. Later turns that continue it can no
    longer be read as a chain ("missing").
  tg_version(): {"version": VERSION}.

Per-call bounds (measured on a 2-core machine, AOF fsync always, through RESP): tg_sync takes
at most 1024 parties (~70 ms; 100 parties ~6 ms, one ~0.7 ms), 1024 cooldowns, 4096 spend
records (~2 µs each) and 1000 seeded keys and teams (~45 ms; a replica with more sends them over
several syncs); a larger payload is refused whole, so the caller must split. It reclaims at most
1024 leases of dead replicas and returns at most 1000 changes and 1024 cooldowns (the rest on
the next calls). tg_admit takes at most 16 parties. tg_spend_logs reads at most 10000 records
(~30 ms) and returns at most 1000 (`next` continues). No function walks the keyspace.
]]

local VERSION = '10'

local MAX_PARTIES = 1024
local MAX_ADMIT_PARTIES = 16
local MAX_COOLDOWNS = 1024
local MAX_SPEND_LOGS = 4096
local MAX_SEED = 1000
local MAX_ID_LEN = 512
local MAX_RECORD_LEN = 65536
local CHANGES_KEEP = 10000
local CHANGES_PER_REPLY = 1000
local MAX_RESPONSES = 1024
local RESPONSES_KEEP = 65536
local RESPONSES_PER_REPLY = 1000
local SPEND_KEEP = 100000
local SPEND_KEEP_MAX = 100000000
local SPEND_SCAN = 10000
-- Reads of 64 entries a sync makes at most to trim tg:spend (a smaller keep catches up over syncs).
local SPEND_TRIM_READS = 16
local SPEND_LIMIT_MAX = 1000
local SPEND_LIMIT_DEFAULT = 100
local RECLAIM_REPLICAS = 16
local RECLAIM_LEASES = 1024
local COOLDOWNS_REPLY = 1024
local SEQ_KEEP_MS = 86400000
local TTL_DEFAULT_MS = 3000
local TTL_MIN_MS = 100
local TTL_MAX_MS = 3600000
-- Integers are exact in a Lua number (a double) below 2^53.
local MAX_INT = 9007199254740991

---------------------------------------------------------------------------------------------------
-- JSON out. cjson.encode writes integers above 1e14 with 14 significant digits and empty arrays
-- as `{}`; replies need neither, so they are built with `arr` (a JSON array, even empty), `raw`
-- (JSON text spliced as is), `cjson.null`, and encoded here. Strings go through cjson.encode.

local ARRAY = {}
local RAW = {}

local function arr(t)
  return setmetatable(t or {}, ARRAY)
end

local function raw(text)
  return setmetatable({ text }, RAW)
end

local function encode_number(n)
  if n ~= n or n == math.huge or n == -math.huge then
    return 'null'
  end
  if n == math.floor(n) and math.abs(n) <= MAX_INT then
    if n == 0 then
      return '0'
    end
    return string.format('%.0f', n)
  end
  local s = string.format('%.14g', n)
  if tonumber(s) ~= n then
    s = string.format('%.17g', n)
  end
  return s
end

local function encode_into(v, out)
  local kind = type(v)
  if kind == 'string' then
    out[#out + 1] = cjson.encode(v)
  elseif kind == 'number' then
    out[#out + 1] = encode_number(v)
  elseif kind == 'boolean' then
    out[#out + 1] = v and 'true' or 'false'
  elseif kind == 'table' then
    local mt = getmetatable(v)
    if mt == RAW then
      out[#out + 1] = v[1]
    elseif mt == ARRAY then
      out[#out + 1] = '['
      for i = 1, #v do
        if i > 1 then
          out[#out + 1] = ','
        end
        encode_into(v[i], out)
      end
      out[#out + 1] = ']'
    else
      out[#out + 1] = '{'
      local first = true
      for k, x in pairs(v) do
        if not first then
          out[#out + 1] = ','
        end
        first = false
        out[#out + 1] = cjson.encode(tostring(k))
        out[#out + 1] = ':'
        encode_into(x, out)
      end
      out[#out + 1] = '}'
    end
  else
    -- cjson.null (and nothing else reaches here)
    out[#out + 1] = 'null'
  end
end

local function encode(v)
  local out = {}
  encode_into(v, out)
  return table.concat(out)
end

local function fail(message)
  return encode({ error = message })
end

local function fmt(n)
  return encode_number(n)
end

---------------------------------------------------------------------------------------------------
-- JSON in: cjson.decode, then checks. `null` and absent are the same everywhere.

local function decode(text)
  if type(text) ~= 'string' or text == '' then
    return nil
  end
  local ok, v = pcall(cjson.decode, text)
  if not ok then
    return nil
  end
  -- cjson decodes `[]` and `{}` alike: remember which one a document was.
  if type(v) == 'table' and string.find(text, '^[ \t\r\n]*%[') then
    setmetatable(v, ARRAY)
  end
  return v
end

local function absent(v)
  return v == nil or v == cjson.null
end

local function is_object(v)
  return type(v) == 'table' and v[1] == nil and getmetatable(v) ~= ARRAY
end

local function is_array(v)
  if type(v) ~= 'table' then
    return false
  end
  local n = 0
  for _ in pairs(v) do
    n = n + 1
  end
  return n == #v
end

local function is_count(v)
  return type(v) == 'number' and v == v and v >= 0 and v <= MAX_INT and v == math.floor(v)
end

local function is_name(v, max)
  return type(v) == 'string' and #v > 0 and #v <= (max or MAX_ID_LEN)
end

-- A non-negative integer field of `obj` (absent: 0), or nil and an error.
local function count_field(obj, field, where)
  local v = obj[field]
  if absent(v) then
    return 0
  end
  if not is_count(v) then
    return nil, where .. '.' .. field .. ' must be a non-negative integer'
  end
  return v
end

-- `{b, r, t, p}` from an object whose fields are optional counts.
local function parse_amounts(v, where, fields)
  if absent(v) then
    v = {}
  end
  if not is_object(v) then
    return nil, where .. ' must be an object'
  end
  local out = {}
  for _, f in ipairs(fields) do
    local n, err = count_field(v, f, where)
    if not n then
      return nil, err
    end
    out[f] = n
  end
  return out
end

local LIMIT_FIELDS = { 'max_budget', 'duration', 'rpm', 'tpm', 'parallel' }

-- Limits: each field null/absent (unlimited) or a count. duration 0 is no window.
local function parse_limits(v, where)
  if absent(v) then
    return {}
  end
  if not is_object(v) then
    return nil, where .. ' must be an object'
  end
  local out = {}
  for _, f in ipairs(LIMIT_FIELDS) do
    local x = v[f]
    if not absent(x) then
      if not is_count(x) then
        return nil, where .. '.' .. f .. ' must be a non-negative integer or null'
      end
      out[f] = x
    end
  end
  if out.duration == 0 then
    out.duration = nil
  end
  return out
end

-- A response id as the gateway and OpenAI make them: 1-256 of [A-Za-z0-9_.-], first a letter or digit.
local function is_response_id(v)
  return type(v) == 'string' and #v > 0 and #v <= 256 and string.find(v, '^[A-Za-z0-9][A-Za-z0-9_.%-]*$') ~= nil
end

local function parse_stream_id(v)
  if type(v) ~= 'string' then
    return nil
  end
  local ms, seq = string.match(v, '^(%d+)%-(%d+)$')
  if not ms or #ms > 15 or #seq > 15 then
    return nil
  end
  return { tonumber(ms), tonumber(seq) }
end

-- a > b for parsed stream ids
local function id_after(a, b)
  return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2])
end

---------------------------------------------------------------------------------------------------
-- Raw spans of a JSON text already validated by cjson.decode: seeded records are stored byte for
-- byte (a decode and encode would turn `[]` into `{}` and round big numbers).

local function json_ws(s, i)
  return string.find(s, '[^ \t\r\n]', i) or (#s + 1)
end

local function json_skip_string(s, i)
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then
      return nil
    end
    if string.byte(s, k) == 34 then
      return k + 1
    end
    j = k + 2
  end
end

-- The index right after the value that starts at (or after whitespace from) i.
local function json_skip(s, i)
  i = json_ws(s, i)
  local c = string.byte(s, i)
  if c == 34 then
    return json_skip_string(s, i)
  end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '[%[%]{}"]', j)
      if not k then
        return nil
      end
      local b = string.byte(s, k)
      if b == 34 then
        j = json_skip_string(s, k)
        if not j then
          return nil
        end
      else
        depth = depth + ((b == 123 or b == 91) and 1 or -1)
        j = k + 1
        if depth == 0 then
          return j
        end
      end
    end
  end
  return string.find(s, '[,%]}%s]', i) or (#s + 1)
end

-- name -> {first, last} of each member's value of the object at i (the last one of a name wins,
-- as in cjson.decode).
local function json_members(s, i)
  local out = {}
  i = json_ws(s, i)
  if string.byte(s, i) ~= 123 then
    return out
  end
  i = json_ws(s, i + 1)
  while string.byte(s, i) == 34 do
    local kend = json_skip_string(s, i)
    if not kend then
      return out
    end
    local name = cjson.decode(string.sub(s, i, kend - 1))
    local vstart = json_ws(s, json_ws(s, kend) + 1)
    local vend = json_skip(s, vstart)
    if not vend then
      return out
    end
    out[name] = { vstart, vend - 1 }
    i = json_ws(s, vend)
    if string.byte(s, i) ~= 44 then
      return out
    end
    i = json_ws(s, i + 1)
  end
  return out
end

-- The text of each element of the array at i.
local function json_elements(s, i)
  local out = {}
  i = json_ws(s, i)
  if string.byte(s, i) ~= 91 then
    return out
  end
  i = json_ws(s, i + 1)
  if string.byte(s, i) == 93 then
    return out
  end
  while true do
    local vend = json_skip(s, i)
    if not vend then
      return out
    end
    out[#out + 1] = string.sub(s, i, vend - 1)
    i = json_ws(s, vend)
    if string.byte(s, i) ~= 44 then
      return out
    end
    i = json_ws(s, i + 1)
  end
end

---------------------------------------------------------------------------------------------------
-- Time, parties, leases.

local function now()
  local t = redis.call('TIME')
  local s = tonumber(t[1])
  return s, s * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local PARTY_FIELDS = { 'spend', 'window_start', 'lifetime', 'minute', 'requests', 'tokens', 'leased', 'leased_parallel' }

local function party_key(id)
  return 'tg:p:{' .. id .. '}'
end

local function lease_key(id)
  return 'tg:l:{' .. id .. '}'
end

local function replica_parties_key(replica)
  return 'tg:r:{' .. replica .. '}'
end

local function seq_key(replica)
  return 'tg:seq:{' .. replica .. '}'
end

-- Reads a party and rolls its windows: the budget window when `duration` has passed (aligned to
-- the first window, as the filter's local counters do), the minute's requests and tokens.
local function load_party(id, limits, now_s)
  local key = party_key(id)
  local v = redis.call('HMGET', key, 'spend', 'window_start', 'lifetime', 'minute', 'requests', 'tokens', 'leased',
    'leased_parallel')
  local p = { id = id, key = key }
  for i, f in ipairs(PARTY_FIELDS) do
    p[f] = tonumber(v[i]) or 0
  end
  local d = limits.duration
  if p.window_start == 0 then
    p.window_start = now_s
  elseif d and now_s >= p.window_start + d then
    p.window_start = p.window_start + math.floor((now_s - p.window_start) / d) * d
    p.spend = 0
  end
  local minute = math.floor(now_s / 60)
  if p.minute ~= minute then
    p.minute = minute
    p.requests = 0
    p.tokens = 0
  end
  return p
end

local function save_party(p)
  redis.call('HSET', p.key, 'spend', fmt(p.spend), 'window_start', fmt(p.window_start), 'lifetime', fmt(p.lifetime),
    'minute', fmt(p.minute), 'requests', fmt(p.requests), 'tokens', fmt(p.tokens), 'leased', fmt(p.leased),
    'leased_parallel', fmt(p.leased_parallel))
end

-- A replica's lease in a party (zeros when it holds none).
local function load_lease(id, replica)
  local l = decode(redis.call('HGET', lease_key(id), replica) or '')
  local out = { b = 0, r = 0, t = 0, p = 0, m = 0 }
  if is_object(l) then
    for f in pairs(out) do
      out[f] = tonumber(l[f]) or 0
    end
  end
  return out
end

local function save_lease(id, replica, l)
  if l.b == 0 and l.r == 0 and l.t == 0 and l.p == 0 then
    redis.call('HDEL', lease_key(id), replica)
    redis.call('SREM', replica_parties_key(replica), id)
  else
    redis.call('HSET', lease_key(id), replica, encode({ b = l.b, r = l.r, t = l.t, p = l.p, m = l.m }))
    redis.call('SADD', replica_parties_key(replica), id)
  end
end

-- The fleet-wide fields of a party in a reply. `replicas`: how many replicas are alive.
local function party_reply(p, replicas)
  return {
    id = p.id,
    spend = p.spend,
    lifetime = p.lifetime,
    window_start = p.window_start,
    requests = p.requests,
    tokens = p.tokens,
    leased = p.leased,
    leased_parallel = p.leased_parallel,
    replicas = replicas,
  }
end

-- Replicas whose heartbeat has not expired (at least 1: the caller).
local function live_replicas(now_ms)
  return math.max(1, redis.call('ZCOUNT', 'tg:replicas', '(' .. fmt(now_ms), '+inf'))
end

-- min(want, limit - used), never negative; all of `want` where there is no limit.
local function grant(want, limit, used)
  if not limit then
    return want
  end
  return math.min(want, math.max(0, limit - used))
end

-- One party of a tg_sync: applies what the replica settled and released, then grants what is
-- left of what it asks to grow by. The store never shrinks a live replica's lease otherwise: a
-- request the replica admitted after building this sync (from a tg_admit grant) keeps its room.
local function sync_party(replica, q, now_s)
  local p = load_party(q.id, q.limits, now_s)
  local l = load_lease(q.id, replica)
  local lim = q.limits

  -- Budget: what was spent enters the window and leaves the lease, with what was released.
  p.spend = p.spend + q.spent
  p.lifetime = p.lifetime + q.spent
  local off = math.min(l.b, q.spent + q.release.b)
  l.b = l.b - off
  p.leased = math.max(0, p.leased - off)

  -- Requests and tokens: a lease of a past minute lapsed with it (the current minute's counts
  -- never held it); a release counts only if the replica meant this minute.
  if l.m ~= p.minute then
    l.r, l.t, l.m = 0, 0, p.minute
  elseif q.m == p.minute then
    off = math.min(l.r, q.release.r)
    l.r = l.r - off
    p.requests = math.max(0, p.requests - off)
    off = math.min(l.t, q.release.t)
    l.t = l.t - off
    p.tokens = math.max(0, p.tokens - off)
  end
  off = math.min(l.p, q.release.p)
  l.p = l.p - off
  p.leased_parallel = math.max(0, p.leased_parallel - off)

  local g = {
    b = grant(q.grow.b, lim.max_budget, p.spend + p.leased),
    r = grant(q.grow.r, lim.rpm, p.requests),
    t = grant(q.grow.t, lim.tpm, p.tokens),
    p = grant(q.grow.p, lim.parallel, p.leased_parallel),
  }
  l.b, l.r, l.t, l.p = l.b + g.b, l.r + g.r, l.t + g.t, l.p + g.p
  p.leased = p.leased + g.b
  p.requests = p.requests + g.r
  p.tokens = p.tokens + g.t
  p.leased_parallel = p.leased_parallel + g.p
  save_party(p)
  save_lease(q.id, replica, l)
  local out = party_reply(p)
  out.granted = g
  out.m = p.minute
  return out
end

-- Returns the budget and slots of dead replicas (heartbeat deadline passed) to the pool; their
-- request and token allowances stay counted until their minute ends. At most RECLAIM_LEASES
-- leases per call; a replica is reported (and forgotten) once all its leases are back. Each one
-- touched is marked in its tg:seq, so that its next tg_sync says `reset` (it may come back: a
-- partition, a stall), even if it called tg_admit in between.
local function reclaim(now_ms)
  local dead = arr()
  local ids = redis.call('ZRANGEBYSCORE', 'tg:replicas', '-inf', now_ms, 'LIMIT', 0, RECLAIM_REPLICAS)
  local budget = RECLAIM_LEASES
  for _, d in ipairs(ids) do
    if budget <= 0 then
      break
    end
    redis.call('HSET', seq_key(d), 'reclaimed', '1')
    redis.call('PEXPIRE', seq_key(d), SEQ_KEEP_MS)
    local rkey = replica_parties_key(d)
    local parties = redis.call('SPOP', rkey, budget)
    budget = budget - #parties
    for _, id in ipairs(parties) do
      local l = load_lease(id, d)
      redis.call('HDEL', lease_key(id), d)
      if l.b > 0 or l.p > 0 then
        local pkey = party_key(id)
        local v = redis.call('HMGET', pkey, 'leased', 'leased_parallel')
        redis.call('HSET', pkey, 'leased', fmt(math.max(0, (tonumber(v[1]) or 0) - l.b)), 'leased_parallel',
          fmt(math.max(0, (tonumber(v[2]) or 0) - l.p)))
      end
    end
    if redis.call('EXISTS', rkey) == 0 then
      redis.call('ZREM', 'tg:replicas', d)
      dead[#dead + 1] = d
    end
  end
  return dead
end

local function fields_of(flat)
  local out = {}
  for i = 1, #flat, 2 do
    out[flat[i]] = flat[i + 1]
  end
  return out
end

-- Spend records: one tg:spend entry per block (one key's records in a sync), {k, n: records, r:
-- their JSON texts joined by newlines} (one XADD, not one per record: a sync carries a busy
-- replica's whole tick). tg:spend:n counts the records the stream holds and tg:spend:i lists
-- `<id> <n>` of each entry, oldest first, so that trimming never reads an entry (a busy key's
-- block holds a tick's records). Entries older than the list (version 7's, one record each)
-- are the stream's first XLEN - LLEN and go first. The oldest go while the rest still hold
-- `keep` records.
local function append_spend(blocks, keep)
  if #blocks == 0 then
    return
  end
  local count = tonumber(redis.call('GET', 'tg:spend:n')) or redis.call('XLEN', 'tg:spend')
  for _, b in ipairs(blocks) do
    local id = redis.call('XADD', 'tg:spend', '*', 'k', b.k, 'n', b.n, 'r', b.r)
    redis.call('RPUSH', 'tg:spend:i', id .. ' ' .. b.n)
    count = count + b.n
  end
  local legacy = redis.call('XLEN', 'tg:spend') - redis.call('LLEN', 'tg:spend:i')
  if count > keep and legacy > 0 then
    local drop = math.min(legacy, count - keep)
    redis.call('XTRIM', 'tg:spend', 'MAXLEN', redis.call('XLEN', 'tg:spend') - drop)
    count = count - drop
  end
  local dropped, last_id = 0, nil
  local reads = 0
  while count > keep and reads < SPEND_TRIM_READS do
    reads = reads + 1
    local oldest = redis.call('LRANGE', 'tg:spend:i', dropped, dropped + 63)
    local stop = #oldest == 0
    for _, e in ipairs(oldest) do
      local id, n = string.match(e, '^(%S+) (%d+)$')
      n = tonumber(n) or 1
      if count - n < keep then
        stop = true
        break
      end
      count = count - n
      dropped = dropped + 1
      last_id = id
    end
    if stop then
      break
    end
  end
  if last_id then
    -- Everything up to and including last_id goes: MINID keeps ids >= its argument.
    local ms, seq = string.match(last_id, '^(%d+)%-(%d+)$')
    if ms then
      redis.call('XTRIM', 'tg:spend', 'MINID', ms .. '-' .. (tonumber(seq) + 1))
    end
    redis.call('LTRIM', 'tg:spend:i', dropped, -1)
  end
  redis.call('SET', 'tg:spend:n', count)
end

-- Which deployment holds each response another replica relayed (tg:responses), after `cursor`
-- (exclusive), at most RESPONSES_PER_REPLY. No cursor: none, and the latest entry's id. Entries
-- trimmed away before a replica read them are only missed: that replica reads the conversation
-- from tg:resp:<id> instead.
local function read_responses(cursor)
  local held = arr()
  if not cursor then
    local last = redis.call('XREVRANGE', 'tg:responses', '+', '-', 'COUNT', 1)
    return held, (last[1] and last[1][1]) or '0-0'
  end
  local next_cursor = cursor
  for _, e in ipairs(redis.call('XRANGE', 'tg:responses', '(' .. cursor, '+', 'COUNT', RESPONSES_PER_REPLY)) do
    local f = fields_of(e[2])
    if f.j then
      held[#held + 1] = raw(f.j)
    end
    next_cursor = e[1]
  end
  return held, next_cursor
end

-- Changes after `cursor` (exclusive), at most CHANGES_PER_REPLY. No cursor: none, and the cursor
-- of the latest change (a new replica starts from now). `lost`: changes after the cursor were
-- trimmed away before this reader saw them (it must forget what it cached).
local function read_changes(cursor)
  local changes = arr()
  if not cursor then
    local last = redis.call('XREVRANGE', 'tg:changes', '+', '-', 'COUNT', 1)
    return changes, (last[1] and last[1][1]) or '0-0', false
  end
  -- Only trimming removes entries, and it removes the oldest: if any were removed, those newer
  -- than the cursor were iff the cursor is older than the first entry left. (A reader whose last
  -- seen entry alone was trimmed is told too: it forgets a little more than it needs to.)
  local lost = false
  if redis.call('EXISTS', 'tg:changes') == 1 then
    local info = fields_of(redis.call('XINFO', 'STREAM', 'tg:changes'))
    local first = parse_stream_id(info['recorded-first-entry-id'])
    lost = (tonumber(info['entries-added']) or 0) > (tonumber(info['length']) or 0)
      and first ~= nil and id_after(first, parse_stream_id(cursor))
  end
  local next_cursor = cursor
  for _, e in ipairs(redis.call('XRANGE', 'tg:changes', '(' .. cursor, '+', 'COUNT', CHANGES_PER_REPLY)) do
    local f = fields_of(e[2])
    changes[#changes + 1] = { id = e[1], token = f.token or '', op = f.op or '' }
    next_cursor = e[1]
  end
  return changes, next_cursor, lost
end

---------------------------------------------------------------------------------------------------
-- Keys.

local KEY_OPS = { put = true, block = true, unblock = true, delete = true }

local function key_key(token)
  return 'tg:k:' .. token
end

local function alias_key(alias)
  return 'tg:alias:' .. alias
end

-- Writes a key's record (nil: removes it) and the alias it holds (nil: none), releasing the one
-- it held before.
local function write_key(token, record, alias)
  local kkey = key_key(token)
  local old = redis.call('HGET', kkey, 'alias')
  if old and old ~= alias and redis.call('GET', alias_key(old)) == token then
    redis.call('DEL', alias_key(old))
  end
  if record == nil then
    redis.call('DEL', kkey)
    return
  end
  redis.call('HSET', kkey, 'record', record)
  if alias then
    redis.call('SET', alias_key(alias), token)
    redis.call('HSET', kkey, 'alias', alias)
  else
    redis.call('HDEL', kkey, 'alias')
  end
end

local function is_token(v)
  return is_name(v, 256) and string.find(v, '^[%w_%-%.:]+$') ~= nil
end

---------------------------------------------------------------------------------------------------
-- tg_sync

local function parse_party(v, i)
  local where = 'parties[' .. i .. ']'
  if not is_object(v) then
    return nil, where .. ' must be an object'
  end
  if not is_name(v.id) then
    return nil, where .. '.id must be a non-empty string'
  end
  local q = { id = v.id }
  local err
  q.limits, err = parse_limits(v.limits, where .. '.limits')
  if not q.limits then
    return nil, err
  end
  -- The first draft's absolute lease targets: refused, so that an engine of that draft cannot
  -- have its spend applied while what it holds is silently ignored.
  for _, f in ipairs({ 'held', 'want', 'requests' }) do
    if not absent(v[f]) then
      return nil, where .. '.' .. f .. ' is not accepted: send release and grow (deltas)'
    end
  end
  for _, f in ipairs({ 'spent', 'tokens', 'm' }) do
    q[f], err = count_field(v, f, where)
    if not q[f] then
      return nil, err
    end
  end
  for _, f in ipairs({ 'release', 'grow' }) do
    q[f], err = parse_amounts(v[f], where .. '.' .. f, { 'b', 'r', 't', 'p' })
    if not q[f] then
      return nil, err
    end
  end
  return q
end

local function parse_seed(text, seed)
  if absent(seed) then
    return {}
  end
  if not is_object(seed) then
    return nil, 'seed must be an object'
  end
  local out = { keys = {}, teams = {} }
  local total = (is_array(seed.keys) and #seed.keys or 0) + (is_array(seed.teams) and #seed.teams or 0)
  if total > MAX_SEED then
    return nil, 'seed has more than ' .. MAX_SEED .. ' keys and teams'
  end
  local spans = json_members(text, 1).seed
  local members = spans and json_members(text, spans[1]) or {}
  for _, kind in ipairs({ 'keys', 'teams' }) do
    local list = seed[kind]
    if not absent(list) then
      if not is_array(list) then
        return nil, 'seed.' .. kind .. ' must be an array'
      end
      local texts = members[kind] and json_elements(text, members[kind][1]) or {}
      if #texts ~= #list then
        return nil, 'seed.' .. kind .. ' could not be read'
      end
      for i, item in ipairs(list) do
        local where = 'seed.' .. kind .. '[' .. i .. ']'
        if not is_object(item) then
          return nil, where .. ' must be an object'
        end
        local e = { record = texts[i] }
        if kind == 'keys' then
          if not is_token(item.token) then
            return nil, where .. '.token must be a key hash'
          end
          e.id = item.token
          if type(item.key_alias) == 'string' and item.key_alias ~= '' then
            e.alias = item.key_alias
          end
        else
          if not is_name(item.team_id) then
            return nil, where .. '.team_id must be a non-empty string'
          end
          e.id = item.team_id
        end
        out[kind][i] = e
      end
    end
  end
  return out
end

-- The spend records after the payload's line, in blocks of one key's records: a line `<key> <n>
-- <bytes>`, then <bytes> bytes (n JSON objects joined by newlines, kept as they are), then a
-- newline. Returns the blocks {k, n, r} and how many records were refused: a block whose header
-- or body is not so ends the reading (the records after it cannot be found).
local function parse_records(text, from)
  local blocks, refused, total = {}, 0, 0
  local len = #text
  local pos = from
  while pos <= len do
    local _, head_end, key, n, bytes = string.find(text, '^([%w_%-]+) (%d+) (%d+)\n', pos)
    n, bytes = tonumber(n), tonumber(bytes)
    local first = head_end and head_end + 1
    local last = head_end and head_end + bytes
    if not head_end or #key > 128 or n < 1 or n > MAX_SPEND_LOGS or last > len
        or string.byte(text, first) ~= 123 or string.byte(text, last) ~= 125 then
      refused = refused + ((head_end and n >= 1 and n <= MAX_SPEND_LOGS) and n or 1)
      break
    end
    total = total + n
    if total > MAX_SPEND_LOGS then
      return nil, 'more than ' .. MAX_SPEND_LOGS .. ' spend records'
    end
    blocks[#blocks + 1] = { k = key == '-' and '' or key, n = n, r = string.sub(text, first, last) }
    pos = last + 2
  end
  return blocks, refused
end

local function parse_sync(args)
  local replica, seq, text = args[1], args[2], args[3]
  if not (is_name(replica, 64) and string.find(replica, '^[%w_%-]+$')) then
    return nil, 'replica must be 1 to 64 letters, digits, - or _'
  end
  if type(seq) ~= 'string' or not string.find(seq, '^%d+$') or #seq > 15 then
    return nil, 'seq must be a non-negative integer'
  end
  if type(text) ~= 'string' then
    return nil, 'payload must be a JSON object'
  end
  local nl = string.find(text, '\n', 1, true)
  local payload = decode(nl and string.sub(text, 1, nl - 1) or text)
  if not is_object(payload) then
    return nil, 'payload must be a JSON object'
  end
  local s = { replica = replica, seq = tonumber(seq) }
  local err
  if absent(payload.ttl_ms) then
    s.ttl_ms = TTL_DEFAULT_MS
  elseif is_count(payload.ttl_ms) and payload.ttl_ms >= TTL_MIN_MS and payload.ttl_ms <= TTL_MAX_MS then
    s.ttl_ms = payload.ttl_ms
  else
    return nil, 'ttl_ms must be an integer from ' .. TTL_MIN_MS .. ' to ' .. TTL_MAX_MS
  end

  local parties = absent(payload.parties) and {} or payload.parties
  if not is_array(parties) then
    return nil, 'parties must be an array'
  end
  if #parties > MAX_PARTIES then
    return nil, 'parties has more than ' .. MAX_PARTIES .. ' entries'
  end
  s.parties = {}
  for i, v in ipairs(parties) do
    s.parties[i], err = parse_party(v, i)
    if not s.parties[i] then
      return nil, err
    end
  end

  local cooldowns = absent(payload.cooldowns) and {} or payload.cooldowns
  if not is_array(cooldowns) then
    return nil, 'cooldowns must be an array'
  end
  if #cooldowns > MAX_COOLDOWNS then
    return nil, 'cooldowns has more than ' .. MAX_COOLDOWNS .. ' entries'
  end
  s.cooldowns = {}
  for i, c in ipairs(cooldowns) do
    local where = 'cooldowns[' .. i .. ']'
    if not is_object(c) or not is_name(c.deployment) then
      return nil, where .. '.deployment must be a non-empty string'
    end
    if not is_count(c.until_ms) then
      return nil, where .. '.until_ms must be a non-negative integer'
    end
    s.cooldowns[i] = c
  end

  local responses = absent(payload.responses) and {} or payload.responses
  if not is_array(responses) then
    return nil, 'responses must be an array'
  end
  if #responses > MAX_RESPONSES then
    return nil, 'responses has more than ' .. MAX_RESPONSES .. ' entries'
  end
  s.responses = {}
  for i, r in ipairs(responses) do
    if not is_object(r) or not is_response_id(r.i) or not is_name(r.d) or not is_name(r.a, 256)
      or not is_count(r.t) then
      return nil, 'responses[' .. i .. '] must be {"i": a response id, "d": a deployment, "a": a model name, "t": unix seconds}'
    end
    s.responses[i] = r
  end
  if not absent(payload.responses_after) and payload.responses_after ~= '' then
    if not parse_stream_id(payload.responses_after) then
      return nil, 'responses_after must be a stream id (ms-seq)'
    end
    s.responses_after = payload.responses_after
  end

  local logs = absent(payload.spend_logs) and {} or payload.spend_logs
  if not is_array(logs) then
    return nil, 'spend_logs must be an array'
  end
  if #logs > MAX_SPEND_LOGS then
    return nil, 'spend_logs has more than ' .. MAX_SPEND_LOGS .. ' entries'
  end
  s.spend_log_keep = SPEND_KEEP
  if not absent(payload.spend_log_keep) then
    if not (is_count(payload.spend_log_keep) and payload.spend_log_keep >= 1
        and payload.spend_log_keep <= SPEND_KEEP_MAX) then
      return nil, 'spend_log_keep must be an integer from 1 to ' .. SPEND_KEEP_MAX
    end
    s.spend_log_keep = payload.spend_log_keep
  end
  -- Version 7's callers (a rolling deploy) send the records in the payload: re-encoded.
  s.spend_logs, s.spend_logs_refused = {}, 0
  local by_key = {}
  for i, rec in ipairs(logs) do
    if not is_object(rec) then
      return nil, 'spend_logs[' .. i .. '] must be an object'
    end
    local field = absent(rec.key_hash) and 'api_key' or 'key_hash'
    local hash = rec[field]
    if not absent(hash) and type(hash) ~= 'string' then
      return nil, 'spend_logs[' .. i .. '].' .. field .. ' must be a string or null'
    end
    local k = absent(hash) and '' or hash
    local g = by_key[k]
    if not g then
      g = { k = k, n = 0, lines = {} }
      by_key[k] = g
      s.spend_logs[#s.spend_logs + 1] = g
    end
    g.n = g.n + 1
    g.lines[g.n] = cjson.encode(rec)
  end
  for _, g in ipairs(s.spend_logs) do
    g.r = table.concat(g.lines, '\n')
  end
  if nl then
    if #logs > 0 then
      return nil, 'spend records go either in spend_logs or after the payload'
    end
    s.spend_logs, s.spend_logs_refused = parse_records(text, nl + 1)
    if not s.spend_logs then
      return nil, s.spend_logs_refused
    end
  end

  if not absent(payload.changes_after) and payload.changes_after ~= '' then
    if not parse_stream_id(payload.changes_after) then
      return nil, 'changes_after must be a stream id (ms-seq)'
    end
    s.changes_after = payload.changes_after
  end

  s.seed, err = parse_seed(text, payload.seed)
  if not s.seed then
    return nil, err
  end
  return s
end

local function apply_seed(seed)
  for _, k in ipairs(seed.keys or {}) do
    local kkey = key_key(k.id)
    if redis.call('EXISTS', kkey) == 0 then
      redis.call('HSET', kkey, 'record', k.record)
      if k.alias and redis.call('SET', alias_key(k.alias), k.id, 'NX') then
        redis.call('HSET', kkey, 'alias', k.alias)
      end
    end
  end
  for _, t in ipairs(seed.teams or {}) do
    redis.call('SET', 'tg:t:' .. t.id, t.record, 'NX')
  end
end

-- A caller that carries a newer library than this one (its payload's `library`) is refused
-- before anything else, in the exact words the filter looks for, so that it loads its own and
-- calls again. An older caller is served: the library only moves forward in a rolling deploy.
local function newer_caller(text)
  local v = string.match(text or '', '"library"%s*:%s*"(%d+)"')
  if v and tonumber(v) > tonumber(VERSION) then
    return '{"error":"library_version","version":"' .. VERSION .. '"}'
  end
  return nil
end

local function tg_sync(_, args)
  local text = args[3] or ''
  local refused = newer_caller(string.sub(text, 1, (string.find(text, '\n', 1, true) or 0) - 1))
  if refused then
    return refused
  end
  local s, err = parse_sync(args)
  if not s then
    return fail(err)
  end
  local now_s, now_ms = now()
  local skey = seq_key(s.replica)

  -- Heartbeat first: this replica is alive whatever reclaim below finds.
  local known = redis.call('ZSCORE', 'tg:replicas', s.replica)
  redis.call('ZADD', 'tg:replicas', now_ms + s.ttl_ms, s.replica)
  local stored = redis.call('HMGET', skey, 'seq', 'reply', 'reclaimed')
  if stored[1] and tonumber(stored[1]) >= s.seq then
    redis.call('PEXPIRE', skey, SEQ_KEEP_MS)
    return stored[2]
  end
  -- A replica reclaimed as dead (marked by reclaim; or, reclaimed by version 1 of this library,
  -- synced before but without a heartbeat entry): its leases are gone, all but what tg_admit
  -- granted it since, and it must drop what it believes it holds before adding this call's grants.
  local reclaimed = stored[3] ~= false or ((not known) and stored[1] ~= false)
  -- Dead replicas first, so that what they held is in the pool for this call.
  local dead = reclaim(now_ms)
  local replicas = live_replicas(now_ms)

  if s.seed.keys then
    apply_seed(s.seed)
  end

  local parties = arr()
  for i, q in ipairs(s.parties) do
    local out = sync_party(s.replica, q, now_s)
    out.reset = reclaimed
    out.replicas = replicas
    parties[i] = out
  end

  for _, c in ipairs(s.cooldowns) do
    if c.until_ms > now_ms then
      redis.call('ZADD', 'tg:cooldowns', 'GT', c.until_ms, c.deployment)
    end
  end
  redis.call('ZREMRANGEBYSCORE', 'tg:cooldowns', '-inf', now_ms)
  local cooldowns = arr()
  local cd = redis.call('ZRANGE', 'tg:cooldowns', 0, COOLDOWNS_REPLY - 1, 'WITHSCORES')
  for i = 1, #cd, 2 do
    cooldowns[#cooldowns + 1] = { deployment = cd[i], until_ms = tonumber(cd[i + 1]) }
  end

  append_spend(s.spend_logs, s.spend_log_keep)

  local changes, cursor, lost = read_changes(s.changes_after)

  for _, r in ipairs(s.responses) do
    local entry = encode({ i = r.i, d = r.d, a = r.a, t = r.t })
    redis.call('XADD', 'tg:responses', 'MAXLEN', '~', RESPONSES_KEEP, '*', 'j', entry)
  end
  local held, held_cursor = read_responses(s.responses_after)

  local reply = encode({
    seq = s.seq,
    now_ms = now_ms,
    parties = parties,
    cooldowns = cooldowns,
    changes = changes,
    changes_cursor = cursor,
    changes_lost = lost,
    responses = held,
    responses_cursor = held_cursor,
    dead = dead,
    reclaimed = reclaimed,
    spend_logs_refused = s.spend_logs_refused > 0 and s.spend_logs_refused or nil,
  })
  redis.call('HSET', skey, 'seq', fmt(s.seq), 'reply', reply)
  redis.call('HDEL', skey, 'reclaimed')
  redis.call('PEXPIRE', skey, SEQ_KEEP_MS)
  return reply
end

---------------------------------------------------------------------------------------------------
-- tg_admit

local function parse_admit(args)
  local replica = args[1]
  if not (is_name(replica, 64) and string.find(replica, '^[%w_%-]+$')) then
    return nil, 'replica must be 1 to 64 letters, digits, - or _'
  end
  local list = decode(args[2])
  if is_object(list) then
    list = { list }
  elseif not is_array(list) or #list == 0 or #list > MAX_ADMIT_PARTIES then
    return nil, 'parties must be a JSON array of 1 to ' .. MAX_ADMIT_PARTIES .. ' parties (or one party object)'
  end
  local a = { replica = replica, parties = {} }
  local seen = {}
  for i, v in ipairs(list) do
    local where = 'parties[' .. i .. ']'
    if not is_object(v) or not is_name(v.id) then
      return nil, where .. ' must be an object with a non-empty id'
    end
    if seen[v.id] then
      return nil, where .. '.id repeats parties[' .. seen[v.id] .. ']'
    end
    seen[v.id] = i
    local limits, err = parse_limits(v.limits, where .. '.limits')
    if not limits then
      return nil, err
    end
    local have = 0
    if not absent(v.have) then
      if not is_count(v.have) then
        return nil, where .. '.have must be a non-negative integer'
      end
      have = v.have
    end
    local extra
    extra, err = parse_amounts(v.extra, where .. '.extra', { 'b', 'r', 't' })
    if not extra then
      return nil, err
    end
    a.parties[i] = { id = v.id, limits = limits, have = have, extra = extra }
  end
  local estimate = decode(args[3])
  if not is_object(estimate) then
    return nil, 'estimate must be a JSON object'
  end
  local err
  a.est, err = parse_amounts(estimate, 'estimate', { 'b', 't' })
  if not a.est then
    return nil, err
  end
  for i, q in ipairs(a.parties) do
    if q.have > a.est.b then
      return nil, 'parties[' .. i .. '].have must be at most estimate.b'
    end
  end
  return a
end

-- Why a party has no room for exactly this request (nil: it has).
local function admit_refusal(p, limits, est, have, now_s)
  if limits.max_budget and (p.spend >= limits.max_budget or p.spend + p.leased + est.b - have > limits.max_budget) then
    local reset_s = cjson.null
    if limits.duration then
      reset_s = math.max(0, p.window_start + limits.duration - now_s)
    end
    return { kind = 'budget', limit = limits.max_budget, used = p.spend + p.leased, reset_s = reset_s }
  elseif limits.parallel and p.leased_parallel + 1 > limits.parallel then
    return { kind = 'parallel', limit = limits.parallel, used = p.leased_parallel, reset_s = cjson.null }
  elseif limits.rpm and p.requests + 1 > limits.rpm then
    return { kind = 'requests', limit = limits.rpm, used = p.requests, reset_s = 60 - now_s % 60 }
  elseif limits.tpm and p.tokens + est.t > limits.tpm then
    return { kind = 'tokens', limit = limits.tpm, used = p.tokens, reset_s = 60 - now_s % 60 }
  end
  return nil
end

local function tg_admit(_, args)
  local a, err = parse_admit(args)
  if not a then
    return fail(err)
  end
  local now_s, now_ms = now()
  local minute = math.floor(now_s / 60)
  local est = a.est

  -- Every party has room for this request, or nothing is written.
  local loaded = {}
  local refused, refusal
  for i, q in ipairs(a.parties) do
    loaded[i] = load_party(q.id, q.limits, now_s)
    if not refusal then
      refusal = admit_refusal(loaded[i], q.limits, est, q.have, now_s)
      if refusal then
        refused = i - 1
      end
    end
  end
  if refusal then
    local replicas = live_replicas(now_ms)
    local parties = arr()
    for i, p in ipairs(loaded) do
      parties[i] = party_reply(p, replicas)
    end
    return encode({ ok = false, now_ms = now_ms, m = minute, party = refused, refusal = refusal, parties = parties })
  end

  -- An admission is a lease of exactly this request, in each party: it settles locally like any
  -- leased one, and returns to the pool with the replica's lease if the replica dies.
  -- A replica that has not synced yet still gets a heartbeat, so that these leases are reclaimed if
  -- it dies; a known one keeps its own deadline.
  redis.call('ZADD', 'tg:replicas', 'NX', now_ms + TTL_DEFAULT_MS, a.replica)
  local replicas = live_replicas(now_ms)
  local parties = arr()
  for i, q in ipairs(a.parties) do
    local p = loaded[i]
    local l = load_lease(q.id, a.replica)
    if l.m ~= p.minute then
      l.r, l.t, l.m = 0, 0, p.minute
    end
    local b = est.b - q.have
    p.leased = p.leased + b
    p.requests = p.requests + 1
    p.tokens = p.tokens + est.t
    p.leased_parallel = p.leased_parallel + 1
    -- What the replica would like on top, as far as each limit leaves room.
    local lim, x = q.limits, q.extra
    local gb, gr, gt = 0, 0, 0
    if lim.max_budget then
      gb = math.max(0, math.min(x.b, lim.max_budget - p.spend - p.leased))
    end
    if lim.rpm then
      gr = math.max(0, math.min(x.r, lim.rpm - p.requests))
    end
    if lim.tpm then
      gt = math.max(0, math.min(x.t, lim.tpm - p.tokens))
    end
    p.leased, p.requests, p.tokens = p.leased + gb, p.requests + gr, p.tokens + gt
    l.b, l.r, l.t, l.p = l.b + b + gb, l.r + 1 + gr, l.t + est.t + gt, l.p + 1
    save_party(p)
    save_lease(q.id, a.replica, l)
    local out = party_reply(p, replicas)
    out.granted = { b = b + gb, r = 1 + gr, t = est.t + gt, p = 1 }
    parties[i] = out
  end
  return encode({ ok = true, now_ms = now_ms, m = minute, parties = parties })
end

---------------------------------------------------------------------------------------------------
-- tg_key_get, tg_key_put

local function tg_key_get(_, args)
  local token = args[1]
  if not is_token(token) then
    return fail('token must be a key hash')
  end
  local record = redis.call('HGET', key_key(token), 'record')
  return encode({ key = record and raw(record) or cjson.null })
end

local function tg_key_put(_, args)
  local token, text, op, expect_text = args[1], args[2], args[3], args[4]
  if not is_token(token) then
    return fail('token must be a key hash')
  end
  if type(op) ~= 'string' or not KEY_OPS[op] then
    return fail('op must be put, block, unblock or delete')
  end
  if type(text) ~= 'string' or #text > MAX_RECORD_LEN then
    return fail('record must be JSON text of at most ' .. MAX_RECORD_LEN .. ' bytes')
  end
  local record = decode(text)
  if absent(record) and op == 'delete' then
    text = nil
  elseif not is_object(record) then
    return fail('record must be a JSON object' .. (op == 'delete' and ' or null' or ''))
  end
  local expect = decode(expect_text)
  if absent(expect) then
    expect = {}
  elseif not is_object(expect) then
    return fail('expect must be a JSON object or null')
  end
  -- The alias the key holds after this write: expect's, else the record's key_alias.
  local alias
  if op ~= 'delete' then
    local a = expect.alias
    if a == nil and is_object(record) then
      a = record.key_alias
    end
    if not absent(a) and a ~= '' then
      if not is_name(a, 256) then
        return fail('alias must be a non-empty string of at most 256 bytes')
      end
      alias = a
    end
  end
  if not absent(expect.absent) and type(expect.absent) ~= 'boolean' then
    return fail('expect.absent must be a boolean')
  end

  if alias then
    local owner = redis.call('GET', alias_key(alias))
    if owner and owner ~= token then
      return encode({ ok = false, error = 'alias_taken', alias = alias })
    end
  end
  if expect.absent == true then
    local current = decode(redis.call('HGET', key_key(token), 'record') or '')
    if is_object(current) and current.deleted ~= true then
      return encode({ ok = false, error = 'key_exists' })
    end
  end

  write_key(token, text, alias)
  local id = redis.call('XADD', 'tg:changes', 'MAXLEN', '~', CHANGES_KEEP, '*', 'token', token, 'op', op)
  return encode({ ok = true, id = id })
end

---------------------------------------------------------------------------------------------------
-- tg_spend_logs

local function tg_spend_logs(_, args)
  local f = decode(args[1])
  if absent(f) then
    f = {}
  elseif not is_object(f) then
    return fail('filter must be a JSON object')
  end
  local key = f.api_key
  if not absent(key) and not is_name(key) then
    return fail('api_key must be a non-empty string or null')
  end
  for _, name in ipairs({ 'start_ms', 'end_ms', 'limit' }) do
    if not absent(f[name]) and not is_count(f[name]) then
      return fail(name .. ' must be a non-negative integer or null')
    end
  end
  local limit = absent(f.limit) and SPEND_LIMIT_DEFAULT or math.min(math.max(f.limit, 1), SPEND_LIMIT_MAX)
  local start = absent(f.start_ms) and '-' or fmt(f.start_ms)
  -- `after`: a stream id (continue after that entry), or `<id>#<n>` (continue in that entry,
  -- after its first n records).
  local skip_in, skip = nil, 0
  if not absent(f.after) then
    local id, n = nil, nil
    if type(f.after) == 'string' then
      id, n = string.match(f.after, '^(%d+%-%d+)#(%d+)$')
    end
    if id and parse_stream_id(id) then
      start, skip_in, skip = id, id, tonumber(n)
    elseif parse_stream_id(f.after) then
      start = '(' .. f.after
    else
      return fail('after must be a stream id (ms-seq), or one followed by #n')
    end
  end
  local stop = absent(f.end_ms) and '+' or fmt(f.end_ms)

  local logs, scanned, last = arr(), 0, nil
  local next_id = cjson.null
  local more, full = true, false
  while more and not full and scanned < SPEND_SCAN do
    -- Small batches: an entry may hold a busy key's whole tick.
    local entries = redis.call('XRANGE', 'tg:spend', start, stop, 'COUNT', 8)
    more = #entries == 8
    for _, e in ipairs(entries) do
      last = e[1]
      local fields = fields_of(e[2])
      scanned = scanned + (tonumber(fields.n) or 1)
      if absent(key) or fields.k == key then
        local text = fields.r or 'null'
        local pos, index = 1, 0
        local from = (e[1] == skip_in) and skip or 0
        while true do
          local nl = string.find(text, '\n', pos, true)
          index = index + 1
          if index > from then
            logs[#logs + 1] = raw(string.sub(text, pos, nl and nl - 1 or #text))
          end
          if #logs >= limit then
            full = true
            -- stop right after the last returned record
            next_id = nl and (e[1] .. '#' .. index) or e[1]
            break
          end
          if not nl then
            break
          end
          pos = nl + 1
        end
        if full then
          break
        end
      end
      if scanned >= SPEND_SCAN then
        more = true
        break
      end
    end
    if last then
      start = '(' .. last
    end
  end
  if not full and more and last then
    next_id = last
  end
  return encode({ logs = logs, next = next_id })
end

---------------------------------------------------------------------------------------------------
-- tg_party_get

local function tg_party_get(_, args)
  local id = args[1]
  if not is_name(id) then
    return fail('party must be a non-empty string')
  end
  local limits, err = parse_limits(decode(args[2] or ''), 'limits')
  if not limits then
    return fail(err)
  end
  local now_s, now_ms = now()
  local known = redis.call('EXISTS', party_key(id)) == 1
  local out = party_reply(load_party(id, limits, now_s), live_replicas(now_ms))
  out.known = known
  return encode(out)
end

---------------------------------------------------------------------------------------------------
-- Responses API responses the gateway keeps (tg:resp:<id>), so that `previous_response_id` works
-- for every provider and on every replica. Each turn holds only its own input and response; a
-- chain is read by following `prev` back.

local RESPONSE_TTL_MAX = 2592000
local RESPONSE_CHAIN_MAX = 1024
local RESPONSE_BYTES_MAX = 67108864

local function response_key(id)
  return 'tg:resp:' .. id
end

local function tg_response_put(_, args)
  local id, prev, alias, ttl, tail = args[1], args[2], args[3], tonumber(args[4]), args[5]
  if not is_response_id(id) then
    return fail('id must be a response id')
  end
  -- webdis cannot carry an empty argument: `-` is none.
  if prev == '-' then
    prev = ''
  elseif not is_response_id(prev) then
    return fail('prev must be a response id or -')
  end
  if not is_name(alias, 256) then
    return fail('alias must be a non-empty string of at most 256 bytes')
  end
  if not ttl or ttl < 1 or ttl > RESPONSE_TTL_MAX or ttl ~= math.floor(ttl) then
    return fail('ttl must be a whole number of seconds from 1 to ' .. RESPONSE_TTL_MAX)
  end
  if type(tail) ~= 'string' or #tail > RESPONSE_BYTES_MAX then
    return fail('the record must be at most ' .. RESPONSE_BYTES_MAX .. ' bytes')
  end
  -- `<n> <input><response>`: n the input's length in bytes.
  local space = string.find(tail, ' ', 1, true)
  local n = space and space <= 10 and tonumber(string.sub(tail, 1, space - 1))
  local input = n and string.sub(tail, space + 1, space + n)
  local response = n and string.sub(tail, space + n + 1)
  local shaped = input and #input == n and string.sub(input, 1, 1) == '[' and string.sub(input, -1) == ']'
    and string.sub(response, 1, 1) == '{' and string.sub(response, -1) == '}'
  if not shaped then
    return fail('the record must be the input\'s length, a space, the input (a JSON array) and the response (a JSON object)')
  end
  local key = response_key(id)
  redis.call('DEL', key)
  if prev ~= '' then
    redis.call('HSET', key, 'alias', alias, 'input', input, 'response', response, 'prev', prev)
  else
    redis.call('HSET', key, 'alias', alias, 'input', input, 'response', response)
  end
  redis.call('EXPIRE', key, ttl)
  -- The turns this one continues live as long as it does.
  local at, n = prev, 0
  while at ~= '' and at and n < RESPONSE_CHAIN_MAX do
    local k = response_key(at)
    if redis.call('TTL', k) < ttl then
      if redis.call('EXPIRE', k, ttl) == 0 then
        break
      end
    end
    at = redis.call('HGET', k, 'prev') or ''
    n = n + 1
  end
  return encode({ ok = true })
end

local function tg_response_get(_, args)
  local id = args[1]
  if not is_response_id(id) then
    return fail('id must be a response id')
  end
  local h = redis.call('HMGET', response_key(id), 'alias', 'response', 'input')
  if not h[1] or not h[2] or not h[3] then
    return encode({ found = false })
  end
  return encode({ found = true, alias = h[1], response = raw(h[2]), input = raw(h[3]) })
end

local function tg_response_chain(_, args)
  local id, max_bytes = args[1], tonumber(args[2])
  if not is_response_id(id) then
    return fail('id must be a response id')
  end
  if not max_bytes or max_bytes < 1 or max_bytes > RESPONSE_BYTES_MAX then
    return fail('max_bytes must be from 1 to ' .. RESPONSE_BYTES_MAX)
  end
  local turns, alias, bytes, at = {}, nil, 0, id
  while at ~= '' do
    if #turns >= RESPONSE_CHAIN_MAX then
      return encode({ found = true, refused = 'too_long', turns = #turns })
    end
    local h = redis.call('HMGET', response_key(at), 'alias', 'input', 'response', 'prev')
    if not h[1] or not h[2] or not h[3] then
      if #turns == 0 then
        return encode({ found = false })
      end
      return encode({ found = true, refused = 'missing', missing = at })
    end
    alias = alias or h[1]
    bytes = bytes + #h[2] + #h[3]
    if bytes > max_bytes then
      return encode({ found = true, refused = 'too_large', bytes = bytes })
    end
    turns[#turns + 1] = { input = raw(h[2]), response = raw(h[3]) }
    at = h[4] or ''
  end
  -- Oldest first.
  local ordered = arr()
  for i = #turns, 1, -1 do
    ordered[#ordered + 1] = turns[i]
  end
  return encode({ found = true, alias = alias, turns = ordered })
end

local function tg_response_delete(_, args)
  local id = args[1]
  if not is_response_id(id) then
    return fail('id must be a response id')
  end
  return encode({ deleted = redis.call('DEL', response_key(id)) == 1 })
end

local function tg_version()
  return encode({ version = VERSION })
end

redis.register_function('tg_sync', tg_sync)
redis.register_function('tg_admit', tg_admit)
redis.register_function('tg_key_put', tg_key_put)
redis.register_function{ function_name = 'tg_key_get', callback = tg_key_get, flags = { 'no-writes' } }
redis.register_function{ function_name = 'tg_spend_logs', callback = tg_spend_logs, flags = { 'no-writes' } }
redis.register_function{ function_name = 'tg_party_get', callback = tg_party_get, flags = { 'no-writes' } }
redis.register_function('tg_response_put', tg_response_put)
redis.register_function('tg_response_delete', tg_response_delete)
redis.register_function{ function_name = 'tg_response_get', callback = tg_response_get, flags = { 'no-writes' } }
redis.register_function{ function_name = 'tg_response_chain', callback = tg_response_chain, flags = { 'no-writes' } }
redis.register_function{ function_name = 'tg_version', callback = tg_version, flags = { 'no-writes' } }
