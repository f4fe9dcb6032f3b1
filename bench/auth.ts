// What authenticating a request costs the gateway: CPU per request for a bearer token seen for
// the first time (signature checked), one seen before (remembered until it expires), and an API
// key. Prints one line.
//   node bench/auth.ts [requests=20000]
import { Authenticator, generateApiKey, issueToken } from '../src/http/auth.ts';

const requests = Number(process.argv[2] ?? 20_000);
const secret = 'a benchmark signing secret of 32+ bytes';
const key = generateApiKey({ subject: 'ops', role: 'operator' });
const authenticator = new Authenticator({ jwt: { secret }, apiKeys: [key.record] });
const tokens = await Promise.all(
  Array.from({ length: requests }, (_, index) =>
    issueToken({ secret, subject: `customer-${index}`, role: 'customer' }),
  ),
);

async function cpuMicrosPerCall(credentials: (index: number) => { authorization?: string; apiKey?: string }) {
  const before = process.cpuUsage();
  for (let index = 0; index < requests; index++) {
    const { authorization, apiKey } = credentials(index);
    await authenticator.authenticate({ authorization, apiKey }, 'urn:bench:');
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / requests;
}

// Every token new (signature checked), then every token again (remembered), then API keys.
const fresh = await cpuMicrosPerCall((index) => ({ authorization: `Bearer ${tokens[index]}` }));
// The cache holds the last 10,000 verified: these are among them.
const remembered = await cpuMicrosPerCall((index) => ({
  authorization: `Bearer ${tokens[requests - 1 - (index % 5000)]}`,
}));
const apiKey = await cpuMicrosPerCall(() => ({ apiKey: key.key }));
console.log(
  `auth: ${requests} requests each; CPU per request: new bearer token ${fresh.toFixed(1)} µs, remembered token ${remembered.toFixed(1)} µs, API key ${apiKey.toFixed(1)} µs`,
);
