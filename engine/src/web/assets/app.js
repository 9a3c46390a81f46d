// chatd's browser client: one page, no build step, no dependencies.
//
// It speaks the native line protocol (docs/PROTOCOL.md) over the server's
// /ws WebSocket, one line per text frame in each direction. Everything the
// server says is shown with textContent or text nodes, never as HTML: chat
// is untrusted input, and a line full of markup must stay text.
'use strict';

(() => {
  // How many lines of history a room shows when joined.
  const HISTORY_ON_JOIN = 50;
  // The server's default history_page: a `since` page this full may have
  // more behind it.
  const PAGE = 100;
  // At most this many catch-up pages per room at once (10,000 lines): a
  // client that was away for days shows the newest lines, not everything.
  const MAX_CATCH_UP_PAGES = 100;
  const ROOM_REFRESH_MS = 20000;
  // A query the server never answers (a lost connection is handled apart)
  // must not block the ones behind it for ever.
  const QUERY_TIMEOUT_MS = 10000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  // The server allows 20 lines per connection per 10 s (rate_limit) and
  // closes a connection that keeps going past it. The page paces itself
  // under that: background queries (room list, unread counts) only while
  // the window is far from full, so a person's own lines always fit.
  const RATE_WINDOW_MS = 10000;
  const RATE_FOREGROUND = 17;
  const RATE_BACKGROUND = 11;
  // Lines kept per room log; older ones are dropped from the page.
  const MAX_LINES = 2000;
  const STORAGE_KEY = 'chatd.session.v1';

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    title: $('room-title'),
    topic: $('topic'),
    logs: $('logs'),
    alert: $('alert'),
    input: $('input'),
    compose: $('compose'),
    completions: $('completions'),
    roomList: $('room-list'),
    sidebar: $('sidebar'),
    roomsToggle: $('rooms-toggle'),
    roomsToggleUnread: $('rooms-toggle-unread'),
    nickForm: $('nick-form'),
    nickInput: $('nick-input'),
    joinForm: $('join-form'),
    joinInput: $('join-input'),
    help: $('help'),
    helpOpen: $('help-open'),
    helpClose: $('help-close'),
    helpList: $('help-list'),
  };

  // ---- Saved state --------------------------------------------------------
  // sessionStorage, not localStorage: it belongs to this tab, so a reload
  // catches up where it was, while a second tab is a second person (the
  // same saved nickname in two tabs would fight over it).
  const saved = loadSaved();

  function loadSaved() {
    try {
      const value = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || '{}');
      return {
        nick: typeof value.nick === 'string' ? value.nick : null,
        room: typeof value.room === 'string' ? value.room : null,
        rooms: value.rooms && typeof value.rooms === 'object' ? value.rooms : {},
      };
    } catch {
      return { nick: null, room: null, rooms: {} };
    }
  }

  // Written at most every 200 ms (a burst of history changes many ids),
  // and at once when the page goes away.
  let saveTimer = null;
  function save() {
    if (saveTimer === null) saveTimer = setTimeout(writeSaved, 200);
  }

  function writeSaved() {
    clearTimeout(saveTimer);
    saveTimer = null;
    const rooms = {};
    for (const room of state.rooms.values()) {
      if (room.visited) rooms[room.name] = { lastId: room.lastId };
    }
    saved.rooms = rooms;
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(saved));
    } catch {
      // Storage full or disabled: the page works on, it only forgets on reload.
    }
  }
  window.addEventListener('pagehide', writeSaved);

  // ---- State ---------------------------------------------------------------
  const state = {
    ws: null,
    online: false, // welcomed on the current connection
    attempt: 0, // failed connection attempts since the last welcome
    reconnectTimer: null,
    nick: null,
    room: null, // the current room, '#name' in lower case
    rooms: new Map(),
    nicks: new Set(),
    help: new Map(), // '#cmd' -> { usage, summary }
    showHelpInLog: false,
    // Lines waiting for the rate window, and the send times inside it.
    outbox: [],
    sentTimes: [],
    pumpTimer: null,
    // History and search queries, one at a time (see runQueries).
    queries: [],
    inflight: null,
    collecting: null,
    // #rooms pages asked for, in order, and whether a person asked.
    roomsAsked: [],
    // Own chat lines shown at once and waiting for their `+ ack ID`.
    pendingAcks: [],
    pendingJoin: null,
    lastRoomsAsk: null,
    // Confirmations of the page's own setup, not shown.
    quietEvents: [],
    // The most entries the server gives in one history answer: PAGE until
    // a catch-up shows the server's history_page is smaller.
    pageLimit: PAGE,
    // The saved nickname being taken back after a (re)connect.
    nickRestore: null,
    refreshTimer: null,
    completion: null,
  };

  for (const [name, value] of Object.entries(saved.rooms)) {
    const room = roomState(name);
    room.visited = true;
    room.lastId = Number(value && value.lastId) || 0;
  }

  function roomState(name) {
    const key = name.toLowerCase();
    let room = state.rooms.get(key);
    if (!room) {
      const log = document.createElement('div');
      log.className = 'log';
      log.setAttribute('role', 'log');
      log.setAttribute('aria-live', 'polite');
      log.setAttribute('aria-label', `Messages in ${key}`);
      log.tabIndex = 0; // so the keyboard can scroll it
      log.hidden = true;
      log.dataset.room = key;
      ui.logs.append(log);
      room = {
        name: key,
        log,
        ids: new Set(),
        lastId: 0,
        members: null,
        isPrivate: false,
        topic: '',
        listed: false,
        visited: false,
        unread: 0,
        unreadFull: false,
        unreadAsked: false,
        item: null, // its entry in the room list (renderRooms)
      };
      state.rooms.set(key, room);
    }
    return room;
  }

  // ---- Connection -------------------------------------------------------------
  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    setStatus('connecting', 'connecting…');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    let ws;
    try {
      ws = new WebSocket(scheme + location.host + '/ws');
    } catch (error) {
      reconnectLater();
      return;
    }
    state.ws = ws;
    ws.addEventListener('message', (event) => {
      if (ws === state.ws && typeof event.data === 'string') onLine(event.data);
    });
    ws.addEventListener('close', () => {
      if (ws !== state.ws) return;
      state.ws = null;
      connectionLost();
    });
    // An error is always followed by close, which does the work.
    ws.addEventListener('error', () => {});
  }

  function connectionLost() {
    const wasOnline = state.online;
    state.online = false;
    // Everything queued belonged to that connection: the new one starts
    // over (restore the nickname, rejoin, catch up).
    state.outbox = [];
    state.sentTimes = [];
    clearTimeout(state.pumpTimer);
    state.pumpTimer = null;
    if (state.inflight) clearTimeout(state.inflight.timer);
    state.queries = [];
    state.inflight = null;
    state.collecting = null;
    state.roomsAsked = [];
    state.pendingAcks = [];
    state.pendingJoin = null;
    for (const room of state.rooms.values()) room.unreadAsked = false;
    if (wasOnline) notice('disconnected from the server');
    reconnectLater();
  }

  // Exponential backoff with jitter: 0.5 s doubling up to 15 s, each delay
  // drawn between half and all of it, so pages that lost the same server
  // do not all knock at the same moment when it comes back.
  function reconnectLater() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** state.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    state.attempt += 1;
    setStatus('offline', `offline; reconnecting in ${Math.ceil(delay / 1000)} s (attempt ${state.attempt})`);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.textContent = text;
  }

  // The browser knows the network is back before any timer does.
  window.addEventListener('online', () => {
    if (!state.ws && state.reconnectTimer !== null) connect();
  });

  // ---- Sending -------------------------------------------------------------
  // `background` lines (room list, unread counts) wait while the rate
  // window is busy; the others go out as soon as the window allows.
  function send(line, background = false) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.outbox.push({ line, background });
    pump();
    return true;
  }

  function pump() {
    clearTimeout(state.pumpTimer);
    state.pumpTimer = null;
    const now = Date.now();
    while (state.sentTimes.length && now - state.sentTimes[0] >= RATE_WINDOW_MS) state.sentTimes.shift();
    while (state.outbox.length && state.ws && state.ws.readyState === WebSocket.OPEN) {
      // The first foreground line goes first; background lines only when
      // nothing else waits.
      let index = state.outbox.findIndex((item) => !item.background);
      if (index < 0) index = 0;
      const item = state.outbox[index];
      const limit = item.background ? RATE_BACKGROUND : RATE_FOREGROUND;
      if (state.sentTimes.length >= limit) break;
      state.outbox.splice(index, 1);
      state.ws.send(item.line);
      state.sentTimes.push(now);
    }
    if (state.outbox.length && state.sentTimes.length) {
      state.pumpTimer = setTimeout(pump, state.sentTimes[0] + RATE_WINDOW_MS - now + 10);
    }
  }

  // ---- History queries ----------------------------------------------------
  // The server reads stored history off its chat thread and allows one
  // request in flight per connection and 4 waiting (`! try-later` beyond).
  // The page keeps its own queue and sends the next query only when the
  // last one is answered, so the unread counts of many rooms never push a
  // person's own #history over that limit.
  function query(line, options) {
    state.queries.push({ line, ...options });
    runQueries();
  }

  function runQueries() {
    if (state.inflight || !state.queries.length || !state.online) return;
    const next = state.queries.shift();
    state.inflight = next;
    next.timer = setTimeout(() => finishQuery(null, 'timeout'), QUERY_TIMEOUT_MS);
    send(next.line, next.kind === 'unread');
  }

  function finishQuery(entries, error) {
    const done = state.inflight;
    if (!done) return;
    clearTimeout(done.timer);
    state.inflight = null;
    state.collecting = null;
    try {
      done.then(entries, error);
    } finally {
      runQueries();
    }
  }

  // ---- Rooms: history, catch-up, unread ----------------------------------------
  // History when a room becomes current: the newest lines on a first visit,
  // or everything since the last id this page showed (after a reconnect or
  // a reload), page after page, merged by id so nothing shows twice.
  function loadRoom(room) {
    room.visited = true;
    room.unread = 0;
    room.unreadFull = false;
    save();
    if (room.lastId > 0 && room.ids.size > 0) {
      catchUp(room, room.lastId, 0);
      return;
    }
    const remembered = room.lastId;
    query(`#history ${room.name} ${HISTORY_ON_JOIN}`, {
      kind: 'join',
      room: room.name,
      then(entries, error) {
        if (!entries) return historyFailed(room, error);
        for (const entry of entries) showEntry(room, entry);
        // A reload: the page remembered an id older than this page's first
        // line. Ids are global (other rooms' lines come between), so
        // whether lines are missing in between is unknown: page forward
        // from the remembered id, merging with what is shown.
        if (remembered > 0 && entries.length > 0 && entries[0].id > remembered) {
          catchUp(room, remembered, 0);
        }
        scrollToEnd(room);
      },
    });
  }

  function catchUp(room, since, pages, retries = 0, previous = 0) {
    query(`#history ${room.name} since ${since} ${PAGE}`, {
      kind: 'catch-up',
      room: room.name,
      then(entries, error) {
        if (!entries) {
          // A busy history store says try-later: a catch-up is worth
          // another go, it is what the person missed.
          if ((error === 'try-later' || error === 'history-unavailable' || error === 'timeout') && retries < 3 && state.online) {
            setTimeout(() => state.online && catchUp(room, since, pages, retries + 1, previous), 2000 * (retries + 1));
            return;
          }
          return historyFailed(room, error);
        }
        let newest = since;
        for (const entry of entries) {
          showEntry(room, entry);
          if (entry.id > newest) newest = entry.id;
        }
        // A page shorter than asked is the last, unless the server clamps
        // pages to a smaller history_page (the protocol does not say it):
        // so page on until one comes back empty, and learn the clamp when
        // a short page had more behind it.
        if (previous > 0 && previous < PAGE && entries.length > 0) {
          state.pageLimit = Math.min(state.pageLimit, previous);
        }
        if (entries.length > 0 && newest > since && pages + 1 < MAX_CATCH_UP_PAGES) {
          catchUp(room, newest, pages + 1, 0, entries.length);
        }
      },
    });
  }

  function historyFailed(room, error) {
    if (error === 'timeout') notice(`the history of ${room.name} did not come; lines may be missing`, room);
    // Errors from the server were shown as they came.
  }

  // Unread counts. A native connection is a member of exactly one room,
  // its current one, so live lines come only from that room: the server
  // never tells this page what happens elsewhere. For the other rooms this
  // page has visited it asks the stored history for what came after the
  // last id it showed there (`#history #ROOM since ID 100`), when the room
  // list refreshes. 100 lines is one page; a full page shows as 99+
  // rather than paging on for a number nobody needs exactly.
  function refreshRooms() {
    if (!state.online) return;
    // An ask whose answer never came (a refused line) is given up.
    state.roomsAsked = state.roomsAsked.filter((asked) => Date.now() - asked.at < QUERY_TIMEOUT_MS);
    if (!state.roomsAsked.length) {
      state.roomsAsked.push({ page: 1, person: false, at: Date.now() });
      send('#rooms', true);
    }
    for (const room of state.rooms.values()) {
      if (!room.visited || room.name === state.room || room.unreadAsked) continue;
      room.unreadAsked = true;
      const since = room.lastId;
      query(`#history ${room.name} since ${since} ${PAGE}`, {
        kind: 'unread',
        room: room.name,
        then(entries) {
          room.unreadAsked = false;
          // Moved there meanwhile, or failed (a private room we were put
          // out of answers permission-denied): no count.
          if (!entries || room.name === state.room || room.lastId !== since) return;
          room.unread = entries.length;
          room.unreadFull = entries.length >= state.pageLimit;
          renderRooms();
        },
      });
    }
  }

  function scheduleRefresh() {
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(() => {
      if (document.visibilityState === 'visible') refreshRooms();
    }, ROOM_REFRESH_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') refreshRooms();
  });
  window.addEventListener('focus', refreshRooms);

  function setCurrent(name) {
    const room = roomState(name);
    const previous = state.room && state.rooms.get(state.room);
    if (previous && previous !== room) previous.log.hidden = true;
    state.room = room.name;
    saved.room = room.name;
    room.visited = true;
    room.log.hidden = false;
    ui.title.textContent = room.name;
    document.title = `${room.name} · chatd`;
    showTopic(room);
    renderRooms();
    save();
    return room;
  }

  function showTopic(room) {
    ui.topic.textContent = room.topic || 'no topic';
    ui.topic.classList.toggle('empty', !room.topic);
  }

  // ---- Incoming lines --------------------------------------------------------------
  const STAMP = '(\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2})';
  const ROOM_LINE = new RegExp(`^\\[(#[^\\s\\]]+)(?: ${STAMP})?(?: id=(\\d+))?\\] ([\\s\\S]*)$`);
  const WHISPER_LINE = new RegExp(`^\\[whisper(?: to ([^\\s\\]]+))?(?: ${STAMP})?(?: id=(\\d+))?\\] ([\\s\\S]*)$`);

  function onLine(line) {
    // A `+ page` line belongs to the #rooms page just finished only if it
    // comes right after it (#who pages end with one too).
    if (!line.startsWith('+ page ')) state.lastRoomsAsk = null;
    if (state.collecting && collect(line)) return;
    if (line.startsWith('! ')) return onError(line);
    if (line.startsWith('+ ')) return onAnswer(line.slice(2));
    if (line.startsWith('* ')) return onEvent(line.slice(2), line);
    let match = ROOM_LINE.exec(line);
    if (match) {
      const room = roomState(match[1]);
      const entry = parseChat(match[4], match[3], match[2]);
      showEntry(room, entry);
      if (room.name !== state.room && entry.id) {
        room.unread += 1;
        renderRooms();
      }
      return;
    }
    match = WHISPER_LINE.exec(line);
    if (match) return showWhisper(match);
    notice(line);
  }

  // A chat body: `NICK: TEXT`, `* NICK TEXT` (action), `URGENT NICK: TEXT`.
  function parseChat(body, id, stamp) {
    const entry = { id: id ? Number(id) : 0, time: stamp ? parseStamp(stamp) : new Date(), kind: 'chat', nick: '', text: body };
    let match;
    if ((match = /^\* (\S+) ([\s\S]*)$/.exec(body))) {
      entry.kind = 'action';
      entry.nick = match[1];
      entry.text = match[2];
    } else if ((match = /^URGENT (\S+): ([\s\S]*)$/.exec(body))) {
      entry.kind = 'urgent';
      entry.nick = match[1];
      entry.text = match[2];
    } else if ((match = /^(\S+): ([\s\S]*)$/.exec(body))) {
      entry.nick = match[1];
      entry.text = match[2];
    }
    if (entry.nick) state.nicks.add(entry.nick);
    return entry;
  }

  function parseStamp(stamp) {
    // History times are UTC; the page shows local time.
    const time = new Date(stamp.replace(' ', 'T') + 'Z');
    return Number.isNaN(time.getTime()) ? new Date() : time;
  }

  // Collects the entries of the history or search answer in flight. Returns
  // false for a line that is not one (it is then handled as usual).
  function collect(line) {
    const collecting = state.collecting;
    const match = ROOM_LINE.exec(line) || WHISPER_LINE.exec(line);
    if (!match || !match[2]) return false;
    if (ROOM_LINE.test(line)) {
      const entry = parseChat(match[4], match[3], match[2]);
      entry.room = match[1].toLowerCase();
      collecting.entries.push(entry);
    } else {
      collecting.entries.push({ whisper: match, line });
    }
    collecting.remaining -= 1;
    if (collecting.remaining <= 0) finishCollecting();
    return true;
  }

  function finishCollecting() {
    const { entries, header, forPerson } = state.collecting;
    if (forPerson) showQueryAnswer(header, entries);
    if (state.inflight) finishQuery(entries, null);
    else state.collecting = null;
  }

  function onAnswer(answer) {
    let match;
    if ((match = /^(history (\S+)|search) (\d+)( partial)?$/.exec(answer))) {
      const count = Number(match[3]);
      const forPerson = !state.inflight || state.inflight.kind === 'person';
      state.collecting = { remaining: count, entries: [], header: answer, forPerson };
      if (count === 0) finishCollecting();
      return;
    }
    if ((match = /^ack (\d+)$/.exec(answer))) return onAck(Number(match[1]));
    if ((match = /^help (#\S+)([^:]*): ([\s\S]*)$/.exec(answer))) {
      const name = match[1].toLowerCase();
      state.help.set(name, { usage: match[1] + match[2], summary: match[3] });
      renderHelp();
      if (state.showHelpInLog) notice('+ ' + answer, undefined, 'answer');
      return;
    }
    state.showHelpInLog = false;
    if ((match = /^rooms (\d+)$/.exec(answer))) {
      const asked = state.roomsAsked[0] || { page: 1, person: true, at: Date.now() };
      if (!state.roomsAsked.length) state.roomsAsked.push(asked);
      if (asked.page === 1) {
        // A room missing from the new list is gone (or closed to us): it
        // keeps a place in the list only if visited, without a count.
        for (const room of state.rooms.values()) {
          room.listed = false;
          room.members = null;
        }
      }
      if (asked.person) notice('+ ' + answer, undefined, 'answer');
      asked.remaining = Number(match[1]);
      if (asked.remaining === 0) finishRoomsPage();
      return;
    }
    if ((match = /^room (#\S+) (\d+)( private)?(?:: ([\s\S]*))?$/.exec(answer))) {
      const room = roomState(match[1]);
      room.members = Number(match[2]);
      room.isPrivate = Boolean(match[3]);
      room.topic = match[4] || '';
      room.listed = true;
      if (room.name === state.room) showTopic(room);
      renderRooms();
      const asked = state.roomsAsked[0];
      if (asked) {
        if (asked.person) notice('+ ' + answer, undefined, 'answer');
        asked.remaining -= 1;
        if (asked.remaining <= 0) finishRoomsPage();
      }
      return;
    }
    if ((match = /^page (\d+)\/(\d+) of (\d+)/.exec(answer))) {
      // The line after a page of #rooms (or #who) when there are several.
      const asked = state.lastRoomsAsk;
      state.lastRoomsAsk = null;
      const page = Number(match[1]);
      const pages = Number(match[2]);
      // Up to 5 pages of rooms (500 with the default page size) in the list.
      if (asked && page === asked.page && page < pages && page < 5) {
        state.roomsAsked.push({ page: page + 1, person: asked.person, at: Date.now() });
        send(`#rooms ${page + 1}`, !asked.person);
      }
      if (!asked || asked.person) notice('+ ' + answer, undefined, 'answer');
      return;
    }
    if (/^ping: /.test(answer)) {
      // The server's idle check: any line answers it.
      send('#pong');
      return;
    }
    notice('+ ' + answer, undefined, 'answer');
  }

  // A page of the rooms answer ends with its count of room lines; a
  // `+ page` line follows only when there are several pages, and then
  // asks for the next one (see onAnswer).
  function finishRoomsPage() {
    state.lastRoomsAsk = state.roomsAsked.shift() || null;
    renderRooms();
  }

  // The first answer of every connection, and the start of its setup.
  function onWelcome(nick, room) {
    state.online = true;
    state.attempt = 0;
    state.nick = nick;
    ui.nickInput.value = nick;
    setStatus('online', `connected as ${nick}`);
    // Ids let the page merge history with what it shows; acks give its
    // own lines their ids (the server does not echo your own chat).
    send('#ids on');
    send('#ack on');
    state.quietEvents = ['ids on', 'acknowledgements on'];
    if (saved.nick && saved.nick.toLowerCase() !== nick.toLowerCase()) {
      state.nickRestore = { nick: saved.nick, tries: 1 };
      send(`#nick ${saved.nick}`);
    }
    if (!state.help.size) send('#help');
    const want = saved.room;
    const current = setCurrent(room);
    if (want && want !== current.name) {
      state.pendingJoin = { room: want, auto: true };
      send(`#join ${want}`);
    } else {
      loadRoom(current);
    }
    refreshRooms();
    scheduleRefresh();
  }

  const JOINED = /^(?:you joined (#\S+)|you created (?:private room )?(#[^\s;]+); you own it)/;

  function onEvent(event, line) {
    let match;
    const quiet = state.quietEvents.indexOf(event);
    if (quiet >= 0) {
      state.quietEvents.splice(quiet, 1);
      return;
    }
    if ((match = /^welcome, you are (\S+) in (#\S+);/.exec(event))) {
      onWelcome(match[1], match[2]);
      notice(line);
      return;
    }
    if ((match = JOINED.exec(event))) {
      state.pendingJoin = null;
      // Counts follow at once; the next room list sets them right anyway.
      const previous = state.room && state.rooms.get(state.room);
      if (previous && previous.members) previous.members -= 1;
      const joined = roomState(match[1] || match[2]);
      joined.members = (joined.members || 0) + 1;
      const room = setCurrent(joined.name);
      notice(line, room);
      loadRoom(room);
      refreshRooms();
      closeSidebar(false);
      return;
    }
    if ((match = /^you are now (\S+)$/.exec(event))) {
      state.nickRestore = null;
      state.nick = match[1];
      saved.nick = match[1];
      ui.nickInput.value = match[1];
      setStatus('online', `connected as ${match[1]}`);
      save();
    } else if ((match = /^topic of (#\S+): ([\s\S]*)$/.exec(event)) || (match = /^\S+ set the topic of (#\S+): ([\s\S]*)$/.exec(event))) {
      const room = roomState(match[1]);
      room.topic = match[2];
      if (room.name === state.room) showTopic(room);
      renderRooms();
    } else if ((match = /^(#\S+) has no topic$/.exec(event))) {
      const room = roomState(match[1]);
      room.topic = '';
      if (room.name === state.room) showTopic(room);
      renderRooms();
    } else if ((match = /^(\S+) joined (#\S+)$/.exec(event))) {
      state.nicks.add(match[1]);
      const room = roomState(match[2]);
      if (room.members !== null) room.members += 1;
      renderRooms();
    } else if ((match = /^(\S+) left (#[^\s:]+)/.exec(event))) {
      const room = roomState(match[2]);
      if (room.members) room.members -= 1;
      renderRooms();
    } else if ((match = /^(\S+) is now known as (\S+)$/.exec(event))) {
      state.nicks.delete(match[1]);
      state.nicks.add(match[2]);
    }
    notice(line);
  }

  // Codes that mean "your chat line was not sent"; the newest own line
  // still waiting for its ack is marked so.
  const REFUSED_LINE = new Set(['muted', 'rate-limited', 'invisible-text', 'line-too-long', 'control-char', 'no-such-nick', 'bad-utf8']);
  // Codes a history query can be answered with.
  const HISTORY_ERRORS = new Set(['try-later', 'history-unavailable', 'permission-denied', 'bad-room', 'bad-syntax', 'bad-argument']);
  const JOIN_ERRORS = new Set(['invite-only', 'banned', 'bad-room', 'room-full', 'bad-key', 'rate-limited', 'too-many-rooms']);

  function onError(line) {
    const match = /^! ([a-z-]+): ([\s\S]*)$/.exec(line);
    const code = match ? match[1] : 'error';
    const text = match ? match[2] : line.slice(2);
    state.showHelpInLog = false;
    let quiet = false;
    // try-later and history-unavailable are history's own; the others are
    // the query's only when the person sent nothing since it went out.
    const queryError = code === 'try-later' || code === 'history-unavailable' || (HISTORY_ERRORS.has(code) && state.inflight && !state.inflight.ambiguous);
    if (state.inflight && !state.collecting && queryError) {
      // Counting unread lines is the page's own business: its failures
      // (a private room since left, say) are not the person's.
      quiet = state.inflight.kind === 'unread';
      finishQuery(null, code);
    } else if (state.pendingJoin && JOIN_ERRORS.has(code)) {
      const join = state.pendingJoin;
      state.pendingJoin = null;
      // The saved room refused us after a reconnect: stay where the
      // server put us and show that room instead.
      if (join.auto) {
        saved.room = state.room;
        loadRoom(roomState(state.room));
      }
    } else if (code === 'nick-taken' && state.nickRestore && state.nickRestore.tries < 4) {
      // After a reload or a quick reconnect the server may not have seen
      // the old connection go yet, and it still holds the nickname: try
      // again in a moment rather than give it up.
      const restore = state.nickRestore;
      restore.tries += 1;
      setTimeout(() => {
        if (state.nickRestore === restore && state.online) send(`#nick ${restore.nick}`);
      }, 1000 * restore.tries);
      return;
    } else if (code === 'nick-taken' || code === 'bad-nick') {
      state.nickRestore = null;
      // The saved nickname is no longer ours: keep the server's.
      saved.nick = state.nick;
      ui.nickInput.value = state.nick || '';
      save();
    } else if (REFUSED_LINE.has(code)) {
      // Nothing in an error says which line it answers. A refused chat
      // line is answered at once and acks come later, so the newest line
      // waiting is the likely one; a line wrongly kept gets its id from
      // history later (adoptOwnLine).
      const pending = state.pendingAcks.pop();
      if (pending && pending.element) {
        pending.element.classList.add('refused');
        pending.element.title = `not sent: ${code}`;
      }
    } else if (code === 'not-stored') {
      state.pendingAcks.shift();
    }
    if (!quiet) showError(code, text);
  }

  function onAck(id) {
    const pending = state.pendingAcks.shift();
    if (!pending || !pending.element) return;
    const room = state.rooms.get(pending.room);
    pending.element.classList.remove('pending');
    if (!room || room.ids.has(id)) {
      pending.element.remove();
      return;
    }
    pending.element.dataset.id = String(id);
    room.ids.add(id);
    if (id > room.lastId) room.lastId = id;
    save();
  }

  // ---- Rendering ---------------------------------------------------------------------
  function timeElement(time) {
    const element = document.createElement('time');
    element.dateTime = time.toISOString();
    element.textContent = time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    element.title = time.toLocaleString();
    return element;
  }

  function span(className, text) {
    const element = document.createElement('span');
    element.className = className;
    element.textContent = text;
    return element;
  }

  function chatElement(entry) {
    const line = document.createElement('div');
    line.className = `line ${entry.kind}`;
    if (entry.id) line.dataset.id = String(entry.id);
    line.append(timeElement(entry.time), ' ');
    if (entry.kind === 'action') {
      line.append(span('text', `* ${entry.nick} ${entry.text}`));
    } else {
      if (entry.kind === 'urgent') line.append(span('tag', 'urgent'), ' ');
      line.append(span('nick', entry.nick), span('sep', ': '), span('text', entry.text));
    }
    if (entry.nick && entry.nick === state.nick) line.classList.add('own');
    return line;
  }

  // Puts a room line in its log, once: lines with ids are merged by id
  // (history, catch-up and live lines may overlap), an own line shown
  // before its ack is recognised by its text.
  function showEntry(room, entry) {
    if (entry.id) {
      if (room.ids.has(entry.id)) return;
      if (entry.nick && entry.nick === state.nick && adoptOwnLine(room, entry)) return;
      room.ids.add(entry.id);
      if (entry.id > room.lastId) {
        room.lastId = entry.id;
        save();
      }
    }
    const element = chatElement(entry);
    const stick = nearEnd(room);
    insertById(room.log, element, entry.id);
    trim(room);
    if (stick) scrollToEnd(room);
  }

  // An own line shown at once, whose ack was lost with its connection,
  // comes back from the history with an id: give it the id, show it once.
  function adoptOwnLine(room, entry) {
    for (const element of room.log.querySelectorAll('.line.own:not([data-id])')) {
      const text = element.querySelector('.text');
      const expected = entry.kind === 'action' ? `* ${entry.nick} ${entry.text}` : entry.text;
      if (text && text.textContent === expected) {
        element.dataset.id = String(entry.id);
        element.classList.remove('pending');
        room.ids.add(entry.id);
        if (entry.id > room.lastId) room.lastId = entry.id;
        return true;
      }
    }
    return false;
  }

  // In id order among the lines that have ids: the newest goes at the end,
  // an older one (history, a catch-up overtaken by live lines) right
  // before the first newer line. Events have no id and stay where shown.
  function insertById(log, element, id) {
    let node = log.lastElementChild;
    let newerSeen = false;
    while (id && node) {
      if (node.dataset.id) {
        if (Number(node.dataset.id) < id) break;
        newerSeen = true;
      }
      node = node.previousElementSibling;
    }
    if (!newerSeen) {
      log.append(element);
      return;
    }
    let next = node ? node.nextElementSibling : log.firstElementChild;
    while (next && !next.dataset.id) next = next.nextElementSibling;
    next.before(element);
  }

  function trim(room) {
    while (room.log.childElementCount > MAX_LINES) room.log.firstElementChild.remove();
  }

  function nearEnd(room) {
    const log = room.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollToEnd(room) {
    room.log.scrollTop = room.log.scrollHeight;
  }

  function currentRoom() {
    return roomState(state.room || '#general');
  }

  // An event, notice or answer in `room` (default: the current one).
  function notice(text, room = currentRoom(), kind = 'event') {
    const line = document.createElement('div');
    line.className = `line ${kind}`;
    line.append(timeElement(new Date()), ' ', span('text', text));
    const stick = nearEnd(room);
    room.log.append(line);
    trim(room);
    if (stick) scrollToEnd(room);
  }

  function showWhisper(match) {
    const [, to, stamp, id, body] = match;
    const line = document.createElement('div');
    line.className = 'line whisper';
    if (id) line.dataset.whisperId = id;
    line.append(timeElement(stamp ? parseStamp(stamp) : new Date()), ' ');
    if (to) {
      line.append(span('tag', `whisper to ${to}`), ' ', span('text', body));
      state.nicks.add(to);
    } else {
      const parts = /^(\S+): ([\s\S]*)$/.exec(body);
      line.append(span('tag', 'whisper'), ' ');
      if (parts) {
        state.nicks.add(parts[1]);
        line.append(span('nick', parts[1]), span('sep', ': '), span('text', parts[2]));
      } else {
        line.append(span('text', body));
      }
    }
    const room = currentRoom();
    const stick = nearEnd(room);
    room.log.append(line);
    if (stick) scrollToEnd(room);
  }

  function showQueryAnswer(header, entries) {
    const room = currentRoom();
    notice('+ ' + header, room, 'answer');
    for (const entry of entries) {
      if (entry.whisper) {
        notice(entry.line, room, 'answer');
      } else {
        const element = chatElement(entry);
        element.classList.add('quoted');
        element.prepend(span('tag', entry.room), ' ');
        room.log.append(element);
      }
    }
    scrollToEnd(room);
  }

  let alertTimer = null;
  function showError(code, text) {
    const line = document.createElement('div');
    line.className = 'line error';
    line.append(timeElement(new Date()), ' ', span('code', code), span('sep', ': '), span('text', text));
    const room = currentRoom();
    room.log.append(line);
    scrollToEnd(room);
    // The log is polite; an error is also put in the alert region, which a
    // screen reader announces at once.
    ui.alert.textContent = '';
    ui.alert.append(span('code', code), ': ', text);
    ui.alert.hidden = false;
    clearTimeout(alertTimer);
    alertTimer = setTimeout(() => {
      ui.alert.hidden = true;
    }, 8000);
  }

  // Each room keeps its one list item, updated in place: a button that
  // was replaced under the pointer or the keyboard focus would lose the
  // click or the focus.
  function renderRooms() {
    const rooms = [...state.rooms.values()]
      .filter((room) => room.listed || room.visited || room.name === state.room)
      .sort((a, b) => a.name.localeCompare(b.name));
    let unreadTotal = 0;
    const keep = new Set();
    rooms.forEach((room, index) => {
      if (!room.item) {
        room.item = document.createElement('li');
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'room';
        button.dataset.room = room.name;
        button.addEventListener('click', () => joinRoom(room.name));
        room.item.append(button);
      }
      const button = room.item.firstElementChild;
      const parts = [span('room-name', room.name)];
      if (room.name === state.room) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
      if (room.isPrivate) parts.push(span('private', 'private'));
      if (room.members !== null) {
        parts.push(span('members', `${room.members} member${room.members === 1 ? '' : 's'}`));
      }
      if (room.unread > 0 && room.name !== state.room) {
        const text = room.unreadFull ? `${state.pageLimit - 1}+` : String(room.unread);
        const unread = span('unread', text);
        unread.setAttribute('aria-label', `${text} unread`);
        parts.push(unread);
        unreadTotal += room.unread;
      }
      if (room.topic) parts.push(span('room-topic', room.topic));
      button.replaceChildren(...parts);
      keep.add(room.item);
      const at = ui.roomList.children[index];
      if (at !== room.item) ui.roomList.insertBefore(room.item, at || null);
    });
    for (const item of [...ui.roomList.children]) if (!keep.has(item)) item.remove();
    ui.roomsToggleUnread.hidden = unreadTotal === 0;
    ui.roomsToggleUnread.textContent = unreadTotal > 99 ? '99+' : String(unreadTotal);
  }

  function renderHelp() {
    const items = [];
    for (const [name, { usage, summary }] of state.help) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'command';
      const code = document.createElement('code');
      code.textContent = usage;
      button.append(code, span('summary', summary));
      button.addEventListener('click', () => {
        ui.help.close();
        ui.input.value = `${name} `;
        ui.input.focus();
      });
      item.append(button);
      items.push(item);
    }
    ui.helpList.replaceChildren(...items);
  }

  // ---- Actions ---------------------------------------------------------------------
  function joinRoom(name) {
    const room = name.startsWith('#') ? name : `#${name}`;
    if (room.toLowerCase() === state.room) {
      closeSidebar(true);
      return;
    }
    if (!state.online) return showError('offline', 'not connected; try again once the page has reconnected');
    state.pendingJoin = { room: room.toLowerCase(), auto: false };
    send(`#join ${room}`);
  }

  function submitLine(line) {
    if (!line.trim()) return true;
    if (!state.online) {
      showError('offline', 'not connected; your line was not sent (it stays in the box)');
      return false;
    }
    const word = line.split(/[ \t]/, 1)[0].toLowerCase();
    if (word === '#help' && !line.trim().includes(' ')) {
      openHelp();
      return true;
    }
    if (word === '#history' || word === '#search') {
      query(line, { kind: 'person', then() {} });
      return true;
    }
    // An error for this line must not be taken for the answer to a query
    // in flight.
    if (state.inflight) state.inflight.ambiguous = true;
    if (word === '#rooms') state.roomsAsked.push({ page: Number(line.split(/\s+/)[1]) || 1, person: true, at: Date.now() });
    if (word === '#help') state.showHelpInLog = true;
    if (word === '#join' || word === '#create') state.pendingJoin = { room: '', auto: false };
    send(line);
    // The server does not send your own chat back: show it now, and give
    // it its id when the ack comes.
    if (!line.startsWith('#') || line.startsWith('##')) {
      const text = line.startsWith('##') ? line.slice(1) : line;
      echo({ kind: 'chat', nick: state.nick, text });
    } else if (word === '#me') {
      const text = line.slice(3).replace(/^[ \t]+/, '');
      if (text) echo({ kind: 'action', nick: state.nick, text });
    } else if (word === '#urgent') {
      const text = line.slice(7).replace(/^[ \t]+/, '');
      if (text) echo({ kind: 'urgent', nick: state.nick, text });
    } else if (word === '#msg' || word === '#w') {
      // The server echoes whispers, but their ack still comes in order.
      state.pendingAcks.push({ element: null, room: state.room });
    }
    return true;
  }

  function echo(partial) {
    const room = currentRoom();
    const element = chatElement({ id: 0, time: new Date(), ...partial });
    element.classList.add('own', 'pending');
    room.log.append(element);
    scrollToEnd(room);
    state.pendingAcks.push({ element, room: room.name });
  }

  ui.compose.addEventListener('submit', (event) => {
    event.preventDefault();
    if (submitLine(ui.input.value)) ui.input.value = '';
    clearCompletion();
  });

  ui.nickForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!nick || nick === state.nick) return;
    if (!state.online) return showError('offline', 'not connected; try again once the page has reconnected');
    send(`#nick ${nick}`);
  });

  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const room = ui.joinInput.value.trim();
    if (!room) return;
    joinRoom(room);
    ui.joinInput.value = '';
  });

  ui.topic.addEventListener('click', () => {
    const room = currentRoom();
    ui.input.value = `#topic ${room.topic}`;
    ui.input.focus();
  });

  // ---- Help panel and room panel --------------------------------------------------
  function openHelp() {
    if (!state.help.size && state.online) send('#help');
    if (!ui.help.open) ui.help.showModal();
  }
  ui.helpOpen.addEventListener('click', openHelp);
  ui.helpClose.addEventListener('click', () => ui.help.close());
  // The dialog closes itself on Escape; focus goes back to what opened it.
  ui.help.addEventListener('close', () => ui.input.focus());

  function closeSidebar(focusToggle) {
    if (!ui.sidebar.classList.contains('open')) return;
    ui.sidebar.classList.remove('open');
    ui.roomsToggle.setAttribute('aria-expanded', 'false');
    if (focusToggle) ui.roomsToggle.focus();
    else ui.input.focus();
  }

  ui.roomsToggle.addEventListener('click', () => {
    const open = !ui.sidebar.classList.contains('open');
    ui.sidebar.classList.toggle('open', open);
    ui.roomsToggle.setAttribute('aria-expanded', String(open));
    if (open) {
      refreshRooms();
      const first = ui.roomList.querySelector('button') || ui.nickInput;
      first.focus();
    }
  });

  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    if (state.completion) {
      clearCompletion();
    } else if (ui.sidebar.classList.contains('open')) {
      closeSidebar(true);
    } else if (ui.alert.hidden === false) {
      ui.alert.hidden = true;
    }
  });

  // ---- Completion ------------------------------------------------------------------
  // Tab completes the word before the cursor: a command name (from the
  // server's #help), a nickname after a command that takes one or at the
  // start of a line, a room after #join and #history. Tab with nothing to
  // complete moves focus as usual, so the keyboard is never trapped.
  const TAKES_NICK = new Set(['#msg', '#w', '#kick', '#invite', '#whois', '#mute', '#unmute', '#ban', '#login']);
  const TAKES_ROOM = new Set(['#join', '#history', '#create']);

  ui.input.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab' || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
    const value = ui.input.value;
    if (!value) return;
    const done = state.completion && state.completion.result === value ? cycleCompletion() : startCompletion(value);
    if (done) event.preventDefault();
  });

  ui.input.addEventListener('input', () => {
    if (state.completion && state.completion.result !== ui.input.value) clearCompletion();
  });

  function candidates(value) {
    const start = value.lastIndexOf(' ') + 1;
    const word = value.slice(start);
    const first = value.split(' ', 1)[0].toLowerCase();
    let pool = [];
    let suffix = ' ';
    if (start === 0 && word.startsWith('#')) {
      pool = [...state.help.keys()];
    } else if (start > 0 && value.slice(0, start).trim().split(/\s+/).length === 1 && TAKES_NICK.has(first)) {
      pool = [...state.nicks];
    } else if (start > 0 && TAKES_ROOM.has(first) && value.slice(0, start).trim().split(/\s+/).length === 1) {
      pool = [...state.rooms.values()].filter((room) => room.listed || room.visited).map((room) => room.name);
    } else if (start === 0) {
      pool = [...state.nicks];
      suffix = ': ';
    }
    const lower = word.toLowerCase();
    const matches = pool.filter((item) => item.toLowerCase().startsWith(lower) && item !== state.nick).sort();
    return { start, word, matches, suffix };
  }

  function startCompletion(value) {
    const { start, word, matches, suffix } = candidates(value);
    if (!word || !matches.length) return false;
    state.completion = { prefix: value.slice(0, start), matches, index: 0, suffix, result: '' };
    if (matches.length === 1) {
      applyCompletion(matches[0] + suffix);
      ui.completions.textContent = '';
      return true;
    }
    // Several: complete the common part, list them; Tab again cycles.
    const common = commonPrefix(matches);
    if (common.length > word.length) {
      applyCompletion(common);
      state.completion.index = -1;
    } else {
      applyCompletion(matches[0] + suffix);
    }
    ui.completions.textContent = `${matches.length} matches: ${matches.join(' ')}`;
    return true;
  }

  function cycleCompletion() {
    const completion = state.completion;
    if (completion.matches.length < 2) {
      clearCompletion();
      return false;
    }
    completion.index = (completion.index + 1) % completion.matches.length;
    applyCompletion(completion.matches[completion.index] + completion.suffix);
    return true;
  }

  function applyCompletion(text) {
    const value = state.completion.prefix + text;
    ui.input.value = value;
    ui.input.setSelectionRange(value.length, value.length);
    state.completion.result = value;
  }

  function clearCompletion() {
    state.completion = null;
    ui.completions.textContent = '';
  }

  function commonPrefix(words) {
    let prefix = words[0];
    for (const word of words) {
      while (!word.toLowerCase().startsWith(prefix.toLowerCase())) prefix = prefix.slice(0, -1);
    }
    return prefix;
  }

  connect();
})();
