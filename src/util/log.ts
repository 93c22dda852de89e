/**
 * Structured logging: one JSON object per line on stderr. Level from PEERDIST_LOG
 * (debug|info|warn|error|silent), default info; tests default to silent unless PEERDIST_LOG is set.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function defaultLevel(): LogLevel {
  const env = process.env.PEERDIST_LOG as LogLevel | undefined;
  if (env && env in ORDER) return env;
  return process.env.PEERDIST_TEST === '1' ? 'silent' : 'info';
}

export function createLogger(
  base: Record<string, unknown> = {},
  level: LogLevel = defaultLevel(),
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < ORDER[level]) return;
    const rec: Record<string, unknown> = { t: new Date().toISOString(), level: lvl, msg, ...base, ...fields };
    for (const [k, v] of Object.entries(rec)) {
      if (v instanceof Error) rec[k] = { name: v.name, message: v.message, code: (v as { code?: string }).code };
      else if (Buffer.isBuffer(v)) rec[k] = v.toString('hex');
      else if (typeof v === 'bigint') rec[k] = v.toString();
    }
    write(JSON.stringify(rec) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger({ ...base, ...f }, level, write),
  };
}

export const nullLogger: Logger = createLogger({}, 'silent');

/** A logger whose repeated messages are rate-limited (see `rateLimited`). */
export interface RateLimitedLogger extends Logger {
  /** Emits one line per message that has suppressed repeats pending, with their count. */
  flush(): void;
  child(fields: Record<string, unknown>): RateLimitedLogger;
}

export interface RateLimitOptions {
  /** Lines per message per window (default 5). */
  burst?: number;
  /** Window length (default 10 s). */
  windowMs?: number;
  now?: () => number;
}

/**
 * Caps repeats of the same message (same level and text, whatever the fields): at most `burst`
 * lines per `windowMs`; the rest are counted and the count goes out as `suppressed: N` on the
 * next line of that message or at `flush()`. Children share the limits of their parent, so a
 * per-download logger bounds one download's log whatever its fields say.
 */
export function rateLimited(log: Logger, opts: RateLimitOptions = {}): RateLimitedLogger {
  const burst = opts.burst ?? 5,
    windowMs = opts.windowMs ?? 10_000,
    now = opts.now ?? Date.now;
  type Level = 'debug' | 'info' | 'warn' | 'error';
  const seen = new Map<
    string,
    {
      start: number;
      count: number;
      suppressed: number;
      emit: (m: string, f?: Record<string, unknown>) => void;
      level: Level;
      msg: string;
    }
  >();
  const wrap = (target: Logger): RateLimitedLogger => {
    const send = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
      const key = `${level}\0${msg}`;
      const t = now();
      let e = seen.get(key);
      if (!e || t - e.start >= windowMs) {
        const pending = e?.suppressed ?? 0;
        e = { start: t, count: 0, suppressed: 0, emit: target[level].bind(target), level, msg };
        seen.set(key, e);
        if (pending > 0) fields = { ...fields, suppressed: pending };
      }
      if (e.count >= burst) {
        e.suppressed++;
        return;
      }
      e.count++;
      target[level](msg, fields);
    };
    return {
      debug: send('debug'),
      info: send('info'),
      warn: send('warn'),
      error: send('error'),
      child: (f) => wrap(target.child(f)),
      flush: () => {
        for (const e of seen.values()) {
          if (e.suppressed > 0) e.emit(e.msg, { suppressed: e.suppressed });
          e.suppressed = 0;
        }
      },
    };
  };
  return wrap(log);
}
