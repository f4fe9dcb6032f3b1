// Runs the simulated payment gateway on its own thread (see payment-gateway-worker.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { createPaymentGateway, type PaymentGatewayOptions } from './payment-gateway.ts';

const options = workerData as Pick<
  PaymentGatewayOptions,
  'settings' | 'ledgerPath' | 'seed' | 'retryAfterSeconds' | 'hangMs' | 'apiKey' | 'fsync'
>;
const gateway = createPaymentGateway(options);
const url = await gateway.listen({ host: '127.0.0.1' });
parentPort!.on('message', (message: { type: string }) => {
  if (message.type !== 'close') return;
  void gateway.close().then(
    () => parentPort!.postMessage({ type: 'closed' }),
    (error: unknown) => parentPort!.postMessage({ type: 'closed', error: String(error) }),
  );
});
parentPort!.postMessage({ type: 'listening', url });
