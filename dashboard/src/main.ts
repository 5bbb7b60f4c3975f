import './dashboard.css';
import './app.js';
