import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { CliError } from './client';

/**
 * A JSON value given on the command line: inline JSON, `@file` (JSON, or YAML for .yaml/.yml), or
 * `@-` for standard input.
 */
export function parseValue(raw: string, option: string): unknown {
  if (raw.startsWith('@')) {
    const file = raw.slice(1);
    let text: string;
    try {
      text = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`${option}: cannot read ${file === '-' ? 'standard input' : file}: ${(err as Error).message}`);
    }
    const yaml = /\.ya?ml$/i.test(file);
    try {
      return yaml ? YAML.parse(text) : JSON.parse(text);
    } catch (err) {
      throw new CliError(`${option}: ${file} is not valid ${yaml ? 'YAML' : 'JSON'}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new CliError(`${option} is not valid JSON (${(err as Error).message}); give JSON or @file`);
  }
}

export interface DefinitionFile {
  name: string;
  body: string;
  contentType: string;
}

/**
 * A workflow definition file, sent as it is written (YAML stays YAML: the server reports problems
 * by path either way). The workflow name comes from `--name`, else the document's `name`, else the
 * file name.
 */
export function readDefinitionFile(file: string, nameOverride?: string): DefinitionFile {
  let body: string;
  try {
    body = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const json = /\.json$/i.test(file) || (!/\.ya?ml$/i.test(file) && /^\s*[{[]/.test(body));
  let doc: unknown;
  try {
    doc = json ? JSON.parse(body) : YAML.parse(body);
  } catch (err) {
    throw new CliError(`${file} is not valid ${json ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  const docName = (doc as { name?: unknown } | null)?.name;
  const name =
    nameOverride ?? (typeof docName === 'string' && docName ? docName : path.basename(file).replace(/\.[^.]+$/, ''));
  return { name, body, contentType: json ? 'application/json' : 'application/yaml' };
}
