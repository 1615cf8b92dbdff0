/**
 * Opens the items of one launch, each in its own sandbox, and collects what
 * went wrong into lines for the user (refused arguments, refused opens).
 */
import type { OpenRequest, SandboxSummary } from '../contract/ipc.js';
import type { LaunchItems } from './launch-items.js';

export interface LaunchOutcome {
  readonly opened: readonly SandboxSummary[];
  /** One plain-words line per item that did not open. */
  readonly problems: readonly string[];
}

function describe(request: OpenRequest): string {
  return request.kind === 'file' ? request.path : request.url;
}

export async function openLaunchItems(
  items: LaunchItems,
  open: (request: OpenRequest) => Promise<SandboxSummary>,
): Promise<LaunchOutcome> {
  const problems = items.refused.map((item) => `${item.argument}: ${item.reason}`);
  // All at once: the session service bounds its own concurrency.
  const results = await Promise.allSettled(items.requests.map((request) => open(request)));
  const opened: SandboxSummary[] = [];
  results.forEach((result, i) => {
    const request = items.requests[i];
    if (result.status === 'fulfilled') opened.push(result.value);
    else if (request) {
      const reason = result.reason instanceof Error ? result.reason.message : 'could not be opened';
      problems.push(`${describe(request)}: ${reason}`);
    }
  });
  return { opened, problems };
}
