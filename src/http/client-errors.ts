import type { Socket } from 'node:net';
import { PROBLEM_CONTENT_TYPE } from './problem.ts';

/** Node's parser errors for a request head it cannot take, and the answer each gets. */
const answers: Record<string, { status: number; reason: string; detail: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'Request Header Fields Too Large',
    detail: 'The request line and headers exceed 16 KiB; send fewer or shorter headers (or a shorter URL).',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    reason: 'Request Timeout',
    detail: 'The request was not received in time.',
  },
};

const badRequest = {
  status: 400,
  reason: 'Bad Request',
  detail: 'The request cannot be parsed as HTTP/1.1.',
};

/**
 * Answers a request Node could not parse with a problem document instead of a bare status line,
 * then closes the connection (its framing is lost). Nothing of the request is echoed.
 */
export function answerClientError(error: Error & { code?: string }, socket: Socket, typeBase: string): void {
  if (!socket.writable || error.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const answer = answers[error.code ?? ''] ?? badRequest;
  const body = JSON.stringify({
    type: answer.status === 400 ? `${typeBase}malformed-request` : 'about:blank',
    title: answer.status === 400 ? 'The request cannot be read' : answer.reason,
    status: answer.status,
    detail: answer.detail,
  });
  socket.end(
    `HTTP/1.1 ${answer.status} ${answer.reason}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
