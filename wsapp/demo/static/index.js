// Index page: nothing but the header's connection (who, state, round-trip time).
import { pageClient } from "./page.js";

pageClient();
