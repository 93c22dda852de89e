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

export function createLogger(base: Record<string, unknown> = {}, level: LogLevel = defaultLevel(),
  write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
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
