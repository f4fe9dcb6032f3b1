// What `markets --help` prints.
export const MARKETS_USAGE = `Usage: markets [demo] [--port <n>] [--dir <path>] [--rate <trades/s>] [--seed <n>]
                      [--auth on|off]
       markets replay --input trades.csv --output windows.csv [--late-output late.csv]
                      [--disorder-ms D] [--allowed-lateness-ms L]

demo    (default) a seeded trade feed into 5 s windows per symbol, a 1-minute moving average,
        price anomaly alerts; results in a read model and a cache, served over HTTP (see docs/markets.md);
        callers authenticate with the development tokens it prints (--auth off: every caller is an
        operator, for local experiments only)
replay  trades CSV (ts_ms,symbol,price,qty) -> canonical windows CSV
        (window_start_ms,symbol,count,volume,vwap,open,high,low,close) and late trades CSV
        (default: the output path with '.late.csv'); watermark = max event time - D - 1 ms,
        advanced after every record (default D 2000, L 0)`;
