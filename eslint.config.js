// Lint rules, including the process-boundary rules: each layer may import only
// what its process can load (the way VS Code keeps `browser`/`node` apart).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';
import globals from 'globals';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'release/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    languageOptions: { globals: globals.node },
  },
  {
    // The renderer runs in a sandboxed Chromium page: no Node, no VMM, no Electron.
    files: ['renderer/**/*.{ts,tsx}'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [...nodeBuiltins, 'electron', 'koffi'],
          patterns: [
            { regex: '(^|/)vmm/', message: 'the renderer never imports the VMM' },
            { regex: '(^|/)electron/(?!contract/)', message: 'the renderer imports only the shared contract' },
          ],
        },
      ],
    },
  },
  {
    // The VMM runs in its own plain Node process and never sees Electron or the UI.
    files: ['vmm/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['electron'],
          patterns: [{ regex: '(^|/)(renderer|electron)/', message: 'the VMM never imports the app or the UI' }],
        },
      ],
    },
  },
  {
    // The shared IPC contract is imported by main, preload and renderer: it imports nothing.
    files: ['electron/contract/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ regex: '^(?!\\./)', message: 'the shared contract imports nothing outside itself' }] },
      ],
    },
  },
);
