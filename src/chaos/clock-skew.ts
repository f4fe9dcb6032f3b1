/**
 * Preloaded (`node --import`) into an app process that `meridian verify` restarts with a skewed
 * clock: shifts `Date.now` (what Meridian's system clock reads) by MERIDIAN_VERIFY_CLOCK_SKEW_MS,
 * so the restarted process sees wall-clock time jump, as after an NTP step or a VM migration.
 * Monotonic time (`performance.now`) is untouched, as it is on a real machine.
 */
const skewMs = Number(process.env.MERIDIAN_VERIFY_CLOCK_SKEW_MS ?? 0);
if (Number.isFinite(skewMs) && skewMs !== 0) {
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + skewMs;
}
