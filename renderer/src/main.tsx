import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { ApiContext } from './api-context.js';
import { App } from './App.js';
import { useUi } from './store.js';
import { selectApi } from './transport/select-api.js';
import './styles.css';

const root = document.getElementById('root');
if (!root) throw new Error('renderer: #root is missing from index.html');
const { api, kind } = selectApi((message) => useUi.getState().setConnectionError(message));
document.documentElement.dataset['transport'] = kind;
createRoot(root).render(
  <StrictMode>
    <ApiContext.Provider value={api}>
      <App />
    </ApiContext.Provider>
  </StrictMode>,
);
