// What the console's browser tests share: the layout check of a view's screenshot.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';

/**
 * The view's screenshot is written and not blank, and its panels and cards are laid out: each
 * has a size, none overlaps another, and none spills out of the page's width.
 */
export async function checkLayout(page: Page, name: string, directory: string): Promise<void> {
  const path = join(directory, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  expect(statSync(path).size).toBeGreaterThan(5000);
  const boxes = await page.$$eval('header, main section.panel, main .card', (elements) =>
    elements.map((element) => {
      const box = element.getBoundingClientRect();
      return {
        tag: element.className || element.tagName,
        x: box.x,
        y: box.y,
        width: box.width,
        height: box.height,
      };
    }),
  );
  const width = (await page.evaluate('document.documentElement.clientWidth')) as number;
  expect(boxes.length).toBeGreaterThan(1);
  for (const box of boxes) {
    expect(box.width * box.height, `${name}: ${box.tag} is empty`).toBeGreaterThan(0);
    expect(box.x + box.width, `${name}: ${box.tag} spills out`).toBeLessThanOrEqual(width + 1);
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!;
      const b = boxes[j]!;
      const overlap =
        a.x < b.x + b.width - 1 &&
        b.x < a.x + a.width - 1 &&
        a.y < b.y + b.height - 1 &&
        b.y < a.y + a.height - 1;
      expect(overlap, `${name}: ${a.tag} overlaps ${b.tag}`).toBe(false);
    }
  }
}
