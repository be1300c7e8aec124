import fs from 'node:fs';
import path from 'node:path';
import { CliError } from './client';

/**
 * `baton new function <name>`: a function project of one's own, copied from the repository's
 * `templates/function/` (what README's "Write a function in your own repository" describes doing by
 * hand), with the template's name (`acme-shout`) and image replaced by the new function's.
 */

/** The template's own name and image, replaced in every text file copied. */
const TEMPLATE_NAME = 'acme-shout';
const TEMPLATE_IMAGE = 'ghcr.io/acme/shout';

/** A function name becomes a queue name and a Kubernetes object name: the definition's rule. */
const FUNCTION_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Build output, installed packages and packed tarballs are never copied. */
const SKIPPED = new Set(['node_modules', 'dist']);

/** Where the template is: next to the CLI in the repository (cli/dist → templates/function). */
export function templateDir(): string {
  return path.resolve(__dirname, '..', '..', 'templates', 'function');
}

export interface Scaffolded {
  dir: string;
  files: string[];
}

export function newFunctionProject(name: string, target: string, template = templateDir()): Scaffolded {
  if (!FUNCTION_NAME.test(name)) {
    throw new CliError(
      `invalid function name '${name}': use lowercase letters, digits and dashes, starting with a letter (max 63)`,
    );
  }
  if (!fs.existsSync(path.join(template, 'package.json'))) {
    throw new CliError(`the function template is not at ${template}: run the CLI from a Baton checkout`);
  }
  if (fs.existsSync(target) && fs.readdirSync(target).length > 0) {
    throw new CliError(`${target} exists and is not empty: choose another --dir`);
  }
  const files: string[] = [];
  const copy = (from: string, to: string): void => {
    fs.mkdirSync(to, { recursive: true });
    for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
      if (SKIPPED.has(entry.name) || entry.name.endsWith('.tgz')) continue;
      const source = path.join(from, entry.name);
      const destination = path.join(to, entry.name);
      if (entry.isDirectory()) {
        copy(source, destination);
        continue;
      }
      const text = fs
        .readFileSync(source, 'utf8')
        .replaceAll(TEMPLATE_IMAGE, `ghcr.io/your-org/${name}`)
        .replaceAll(TEMPLATE_NAME, name);
      fs.writeFileSync(destination, text);
      files.push(path.relative(target, destination));
    }
  };
  copy(template, target);
  return { dir: target, files: files.sort() };
}
